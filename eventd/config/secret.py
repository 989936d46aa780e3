"""Secrets (database passwords) from the YAML, a file, or an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass

from eventd.config.reader import Section
from eventd.config.units import string


@dataclass(frozen=True)
class Secret:
    """A password. ``repr`` and the printed configuration never show it."""

    value: str
    source: str  # "yaml", "file /path" or "env NAME": where it came from, safe to print

    def __repr__(self) -> str:
        return f"Secret(<masked>, from {self.source})"


def read_secret(section: Section, key: str = "password", default: str = "") -> Secret:
    """Read ``key``, ``key_file`` or ``key_env`` (at most one of them) from ``section``.

    The file's content is stripped of one trailing newline; an unset variable or an
    unreadable file is a configuration error, not an empty password.
    """
    given = [k for k in (key, f"{key}_file", f"{key}_env") if section.has(k)]
    if len(given) > 1:
        raise section.error(given[1], f"give only one of {', '.join(given)}")
    if section.has(f"{key}_file"):
        path = section.get(f"{key}_file", string)
        try:
            with open(os.path.join(section.base_dir, path), encoding="utf-8") as fh:
                return Secret(fh.read().removesuffix("\n"), f"file {path}")
        except OSError as exc:
            raise section.error(f"{key}_file", f"cannot read {path}: {exc.strerror}") from None
    if section.has(f"{key}_env"):
        name = section.get(f"{key}_env", string)
        if name not in os.environ:
            raise section.error(f"{key}_env", f"environment variable {name} is not set")
        return Secret(os.environ[name], f"env {name}")
    section.get(f"{key}_file", string, None)
    section.get(f"{key}_env", string, None)
    return Secret(section.get(key, string, default), "yaml")
