"""The ``daemon:`` section: how ``eventd run`` supervises the roles."""

from __future__ import annotations

from dataclasses import dataclass

from eventd.config.common import resolve_path
from eventd.config.reader import Section
from eventd.config.units import duration, host_port, integer, nonempty_string


@dataclass(frozen=True)
class DaemonConfig:
    stop_timeout: float
    start_seconds: float
    start_retries: int
    run_dir: str
    status_host: str
    status_port: int

    @classmethod
    def read(cls, s: Section, state_dir: str) -> "DaemonConfig":
        host, port = s.get("status_listen", host_port, "127.0.0.1:8790")
        return cls(stop_timeout=s.get("stop_timeout", duration, "30s"),
                   start_seconds=s.get("start_seconds", duration, "5s"),
                   start_retries=s.get("start_retries", integer(0, 1000), 5),
                   run_dir=resolve_path(s, s.get("run_dir", nonempty_string, f"{state_dir}/run")),
                   status_host=host, status_port=port)
