"""Small JSON files in ``daemon.run_dir`` through which the daemon's processes inform each other.

- ``procs/<role>-<slot>.json``: written by the role process itself (:mod:`eventd.daemon.child`):
  when its current run started, how many runs since the daemon started, how the last run ended
  and the last error it logged. supervisor forgets a quick exit's code; this file does not.
- ``daemon.json``: written by the manager: its pid, the last reload's outcome, and its verdict
  on each process (FATAL with the reason, or a restart scheduled after a crash).
- ``held/<role>``: the operator stopped the role (``eventd stop``); the manager leaves it stopped.
- ``daemon.lock``: held (flock) by the running manager; free means no daemon runs.

Every write is atomic (write to a temporary file, rename), so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from dataclasses import dataclass, field
from typing import IO, Any

PROCS = "procs"
HELD = "held"
DAEMON_STATE = "daemon.json"
LOCK = "daemon.lock"


def write_json(path: str, data: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    """The file's data, or None when it does not exist or is unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def process_name(role: str, slot: int) -> str:
    """supervisor's name of a role's process: ``collector-0`` (group ``collector``)."""
    return f"{role}-{slot}"


@dataclass
class RunRecord:
    """One role process's account of its runs (``procs/<role>-<slot>.json``)."""

    role: str
    slot: int
    pid: int
    started_at: float
    starts: int = 1                  # runs since the daemon started; restarts = starts - 1
    exited_at: float | None = None   # None while this run goes on (or when it was SIGKILLed)
    exit_code: int | None = None
    error: str | None = None         # the last ERROR record, of this run or an earlier one
    error_at: float | None = None

    @staticmethod
    def path(run_dir: str, role: str, slot: int) -> str:
        return os.path.join(run_dir, PROCS, f"{process_name(role, slot)}.json")

    @classmethod
    def read(cls, run_dir: str, role: str, slot: int) -> "RunRecord | None":
        data = read_json(cls.path(run_dir, role, slot))
        if not isinstance(data, dict):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError:
            return None

    def write(self, run_dir: str) -> None:
        write_json(self.path(run_dir, self.role, self.slot), dataclasses.asdict(self))

    def describes_run_started(self, start: float) -> bool:
        """True when this record is about the run supervisor started at ``start`` (whole seconds,
        rounded down) rather than an earlier one: the new process may not have written yet."""
        return self.started_at >= int(start)


@dataclass
class Verdict:
    """The manager's view of one process, beyond supervisor's state."""

    fatal: str | None = None          # why it will not be restarted
    restart_at: float | None = None   # wall clock of a scheduled restart after a crash
    crashes: int = 0                  # crashes in a row (reset once it ran restart_backoff_max)


@dataclass
class DaemonState:
    """``daemon.json``: what only the manager knows."""

    pid: int
    started_at: float
    config_path: str
    roles: list[str] = field(default_factory=list)            # enabled roles of the running config
    metrics: dict[str, str] = field(default_factory=dict)     # "role-slot" → "host:port" of its endpoint
    reloaded_at: float | None = None
    reload_error: str | None = None   # the last reload was refused: why (the old config still runs)
    verdicts: dict[str, Verdict] = field(default_factory=dict)   # by "group:process"

    def write(self, run_dir: str) -> None:
        write_json(os.path.join(run_dir, DAEMON_STATE), dataclasses.asdict(self))

    @classmethod
    def read(cls, run_dir: str) -> "DaemonState | None":
        data = read_json(os.path.join(run_dir, DAEMON_STATE))
        if not isinstance(data, dict):
            return None
        try:
            verdicts = {k: Verdict(**v) for k, v in (data.pop("verdicts", None) or {}).items()}
            return cls(**data, verdicts=verdicts)
        except TypeError:
            return None


def held_path(run_dir: str, role: str) -> str:
    return os.path.join(run_dir, HELD, role)


def set_held(run_dir: str, role: str, held: bool) -> None:
    """Mark ``role`` as stopped by the operator (or clear the mark)."""
    path = held_path(run_dir, role)
    if held:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8"):
            pass
    elif os.path.exists(path):
        os.unlink(path)


def is_held(run_dir: str, role: str) -> bool:
    return os.path.exists(held_path(run_dir, role))


def take_lock(run_dir: str) -> IO[str] | None:
    """The daemon's lock, or None when another daemon holds it. Keep the file open to keep the lock."""
    fh = open(os.path.join(run_dir, LOCK), "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def daemon_running(run_dir: str) -> bool:
    """True while a manager holds the lock (a crashed manager's lock is released by the kernel)."""
    try:
        fh = open(os.path.join(run_dir, LOCK), encoding="utf-8")   # read-only: operators may lack write access
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
