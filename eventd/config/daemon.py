"""The ``daemon:`` section: how ``eventd run`` supervises the roles (see docs/operations.md)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from eventd.config.common import resolve_path
from eventd.config.reader import Section
from eventd.config.units import duration, host_port, integer, nonempty_string

# Longest path a unix socket address may hold (sun_path is 108 bytes with the trailing NUL).
_MAX_SOCKET_PATH = 107
SOCKET_NAME = "supervisor.sock"


def whole_seconds(lo: float, hi: float):  # type: ignore[no-untyped-def]
    """A duration rounded up to whole seconds within ``[lo, hi]``: supervisor counts whole seconds."""
    def convert(value: object) -> int:
        seconds = math.ceil(duration(value))
        if not lo <= seconds <= hi:
            raise ValueError(f"{value!r} is out of range (expected {lo:g}s..{hi:g}s)")
        return seconds
    return convert


@dataclass(frozen=True)
class DaemonConfig:
    stop_timeout: int            # seconds a role gets to stop gracefully before SIGKILL
    start_seconds: int           # seconds a role must stay up to count as started
    start_retries: int           # quick failed starts in a row before supervisor gives up (FATAL)
    restart_backoff: float       # delay before restarting a role that crashed (doubles per crash)
    restart_backoff_max: float   # cap of that delay; also how long a role must run to count as healthy again
    run_dir: str
    status_host: str
    status_port: int

    @property
    def socket_path(self) -> str:
        """supervisord's XML-RPC socket."""
        return os.path.join(self.run_dir, SOCKET_NAME)

    @classmethod
    def read(cls, s: Section, state_dir: str) -> "DaemonConfig":
        host, port = s.get("status_listen", host_port, "127.0.0.1:8790")
        cfg = cls(stop_timeout=s.get("stop_timeout", whole_seconds(1, 3600), "30s"),
                  start_seconds=s.get("start_seconds", whole_seconds(1, 600), "5s"),
                  start_retries=s.get("start_retries", integer(0, 1000), 5),
                  restart_backoff=s.get("restart_backoff", duration, "1s"),
                  restart_backoff_max=s.get("restart_backoff_max", duration, "1m"),
                  run_dir=resolve_path(s, s.get("run_dir", nonempty_string, f"{state_dir}/run")),
                  status_host=host, status_port=port)
        if cfg.restart_backoff_max < cfg.restart_backoff:
            raise s.error("restart_backoff_max", "must not be shorter than restart_backoff")
        if len(os.fsencode(cfg.socket_path)) > _MAX_SOCKET_PATH:
            raise s.error("run_dir", f"{cfg.run_dir!r} is too long: the control socket {cfg.socket_path} "
                                     f"must fit in {_MAX_SOCKET_PATH} bytes (a unix socket limit)")
        return cfg
