"""The ``hdfs_uploader:`` section: WebHDFS, staging, file rolling."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from eventd.config.common import DeadLetterConfig, RoleCommon, resolve_path
from eventd.config.reader import Section
from eventd.config.units import boolean, choice, duration, host_port, integer, nonempty_string, size

CODECS = ("null", "deflate", "snappy", "zstandard")


@dataclass(frozen=True)
class HdfsUploaderConfig:
    role: RoleCommon
    namenode_host: str
    namenode_port: int
    user: str
    base_dir: str
    staging_dir: str
    staging_max_size: int
    codec: str
    roll_size: int
    roll_age: float
    block_size: int
    verify_records: bool
    upload_parallelism: int
    timeout: float
    min_upload_rate: int
    retry_backoff: float
    retry_backoff_max: float
    group_id: str
    duplicate_id_window: int       # messages per partition whose ids are remembered (collector resends)
    dead_letter: DeadLetterConfig

    @classmethod
    def read(cls, s: Section, state_dir: str) -> "HdfsUploaderConfig":
        host, port = s.get("namenode", host_port, "127.0.0.1:9870")
        dl = s.section("dead_letter")
        cfg = cls(role=RoleCommon.read(s), namenode_host=host, namenode_port=port,
                  user=s.get("user", nonempty_string, "eventd"),
                  base_dir=s.get("base_dir", nonempty_string, "/eventd/events").rstrip("/") or "/",
                  staging_dir=resolve_path(s, s.get("staging_dir", nonempty_string, f"{state_dir}/hdfs/staging")),
                  staging_max_size=s.get("staging_max_size", size, "10GiB"),
                  codec=s.get("codec", choice(*CODECS), "deflate"),
                  roll_size=s.get("roll_size", size, "128MiB"),
                  roll_age=s.get("roll_age", duration, "10m"),
                  block_size=s.get("block_size", size, "256KiB"),
                  verify_records=s.get("verify_records", boolean, True),
                  duplicate_id_window=s.get("duplicate_id_window", integer(0, 10_000_000), 100_000),
                  upload_parallelism=s.get("upload_parallelism", integer(1, 64), 4),
                  timeout=s.get("timeout", duration, "30s"),
                  min_upload_rate=s.get("min_upload_rate", size, "1MiB"),
                  retry_backoff=s.get("retry_backoff", duration, "1s"),
                  retry_backoff_max=s.get("retry_backoff_max", duration, "1m"),
                  group_id=s.get("group_id", nonempty_string, "eventd-hdfs"),
                  dead_letter=DeadLetterConfig.read(dl))
        dl.finish()
        _check(s, cfg)
        return cfg


def _check(s: Section, cfg: HdfsUploaderConfig) -> None:
    if not cfg.base_dir.startswith("/") or cfg.base_dir == "/":
        raise s.error("base_dir", f"{cfg.base_dir!r} must be an absolute HDFS path below /")
    if cfg.roll_size < 1024:
        raise s.error("roll_size", "must be at least 1KiB")
    if not 1024 <= cfg.block_size <= 64 << 20:
        raise s.error("block_size", "must be between 1KiB and 64MiB")
    if cfg.staging_max_size < cfg.block_size:
        raise s.error("staging_max_size", "must be at least block_size")
    if cfg.timeout < 0.1:
        raise s.error("timeout", "must be at least 100ms")
    if cfg.min_upload_rate < 1024:
        raise s.error("min_upload_rate", "must be at least 1KiB (bytes per second)")
    if cfg.retry_backoff_max < cfg.retry_backoff:
        raise s.error("retry_backoff_max", "must not be shorter than retry_backoff")
    # python-snappy: the same module the official avro reader uses for this codec.
    if cfg.codec == "snappy" and importlib.util.find_spec("snappy") is None:
        raise s.error("codec", "snappy needs the python-snappy package (pip install python-snappy)")
