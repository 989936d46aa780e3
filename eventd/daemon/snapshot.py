"""Each role's effective configuration: its fingerprint, and the frozen copy its processes start from.

A role reads its own section plus the shared ones (node, metrics, kafka, events), the schema
files, and — through its metrics port — the process counts of the roles before it. A reload
restarts exactly the roles whose fingerprint changed.

Why role processes start from a frozen copy (a pickle in ``run_dir/config``) and not from the
YAML file: a role restarted after a crash must run the configuration the daemon validated and is
running, not whatever the file says at that moment (an edit not reloaded yet, or an invalid one a
reload refused). The file name carries the fingerprint, so supervisor sees a changed command line
exactly when the role's configuration changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from typing import Any

from eventd.config import Config
from eventd.config.secret import Secret
from eventd.roles.base import _metrics_offset

SHARED_SECTIONS = ("node", "metrics", "kafka", "events")
SUFFIX = ".pickle"


def section_of(cfg: Config, role: str) -> Any:
    """The role's own section, e.g. ``cfg.clickhouse_loader`` for ``clickhouse-loader``."""
    return getattr(cfg, role.replace("-", "_"))


def _plain(value: Any) -> Any:
    """JSON-able form of a config value; secrets included (the digest is salted, see fingerprint)."""
    if isinstance(value, Secret):
        return {"secret": value.value}
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def schema_digest(schema_dir: str) -> str:
    """Digest of the schema files: a new schema version must restart the roles that encode or decode."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(schema_dir)):
        path = os.path.join(schema_dir, name)
        if name.endswith(".avsc") and os.path.isfile(path):
            h.update(name.encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(fh.read() + b"\0")
    return h.hexdigest()


def effective(cfg: Config, role: str) -> dict[str, Any]:
    """Everything ``role`` reads from the configuration, as plain data."""
    data = {name: _plain(getattr(cfg, name)) for name in SHARED_SECTIONS}
    data["role"] = {"name": role, "section": _plain(section_of(cfg, role))}
    data["metrics_port"] = cfg.metrics.base_port + _metrics_offset(cfg, role, 0)
    data["schemas"] = schema_digest(cfg.events.schema_dir)
    return data


def fingerprint(cfg: Config, role: str, salt: bytes) -> str:
    """Short digest of :func:`effective`. ``salt`` is random per daemon: the digest appears in ``ps``
    output and must not help anyone guess a password; it only has to be stable while the daemon runs."""
    text = json.dumps(effective(cfg, role), sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), key=salt, digest_size=8).hexdigest()


def snapshot_path(directory: str, role: str, digest: str) -> str:
    return os.path.join(directory, f"{role}.{digest}{SUFFIX}")


def write_snapshot(cfg: Config, path: str) -> None:
    """Write ``cfg`` to ``path`` atomically, readable by this user only (it holds passwords)."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(cfg, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_snapshot(path: str) -> Config:
    """The configuration a role process runs. The file was written by the daemon under the same user
    in a directory only that user can write, so unpickling it trusts nothing new."""
    with open(path, "rb") as fh:
        cfg = pickle.load(fh)
    if not isinstance(cfg, Config):
        raise ValueError(f"{path} does not hold an eventd configuration")
    return cfg


def prune(directory: str, keep: set[str]) -> None:
    """Delete snapshots not in ``keep`` (full paths); a process that started from one has read it already."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(SUFFIX) and path not in keep:
            os.unlink(path)
