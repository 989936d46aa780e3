"""The ``hdfs_uploader:`` section: WebHDFS, staging, file rolling."""

from __future__ import annotations

from dataclasses import dataclass

from eventd.config.common import DeadLetterConfig, RoleCommon, resolve_path
from eventd.config.reader import Section
from eventd.config.units import choice, duration, host_port, nonempty_string, size


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
    timeout: float
    group_id: str
    dead_letter: DeadLetterConfig

    @classmethod
    def read(cls, s: Section, state_dir: str) -> "HdfsUploaderConfig":
        host, port = s.get("namenode", host_port, "127.0.0.1:9870")
        dl = s.section("dead_letter")
        cfg = cls(role=RoleCommon.read(s), namenode_host=host, namenode_port=port,
                  user=s.get("user", nonempty_string, "eventd"),
                  base_dir=s.get("base_dir", nonempty_string, "/eventd/events"),
                  staging_dir=resolve_path(s, s.get("staging_dir", nonempty_string, f"{state_dir}/hdfs/staging")),
                  staging_max_size=s.get("staging_max_size", size, "10GiB"),
                  codec=s.get("codec", choice("null", "deflate", "snappy", "zstandard"), "deflate"),
                  roll_size=s.get("roll_size", size, "128MiB"),
                  roll_age=s.get("roll_age", duration, "10m"),
                  timeout=s.get("timeout", duration, "30s"),
                  group_id=s.get("group_id", nonempty_string, "eventd-hdfs"),
                  dead_letter=DeadLetterConfig.read(dl))
        dl.finish()
        if not cfg.base_dir.startswith("/"):
            raise s.error("base_dir", f"{cfg.base_dir!r} must be an absolute HDFS path")
        return cfg
