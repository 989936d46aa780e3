"""supervisord as the manager's child: started in the foreground (``-n``) in its own session, its
own log lines re-logged through eventd's logging, its children's output copied to our stderr."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO

log = logging.getLogger("eventd.daemon.supervisord")

_PR_SET_PDEATHSIG = 1
_LINE = re.compile(r"^\S+ \S+ (CRIT|ERRO|WARN|INFO|DEBG|TRAC|BLAT) (.*)$")
_LEVELS = {"CRIT": logging.CRITICAL, "ERRO": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the manager dies, so supervisord stops the roles
    instead of leaving them orphaned (the manager's SIGKILL cannot be caught)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _relog(stream: IO[bytes]) -> None:
    """supervisord's own log (its stdout): one eventd log record per line."""
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        m = _LINE.match(line)
        level, text = (_LEVELS.get(m.group(1), logging.DEBUG), m.group(2)) if m else (logging.INFO, line)
        log.log(level, "%s", text)


def _copy(stream: IO[bytes]) -> None:
    """The roles' output (supervisord's stderr): copied as is, whole lines at a time."""
    out = sys.stderr.buffer
    for raw in stream:
        try:
            out.write(raw)
            out.flush()
        except (OSError, ValueError):
            pass


class SupervisordProcess:
    def __init__(self, conf_path: str) -> None:
        self.conf_path = conf_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Its own session: a Ctrl-C in a terminal reaches the manager only, which stops the roles
        # in parallel within the deadline (supervisord's own shutdown goes group by group).
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for target, stream in ((_relog, self.proc.stdout), (_copy, self.proc.stderr)):
            threading.Thread(target=target, args=(stream,), name=target.__name__, daemon=True).start()
        log.info("supervisord started, pid %d", self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.proc.poll() if self.proc else None

    def terminate(self, timeout: float) -> None:
        """SIGTERM (supervisord stops what still runs, then exits); SIGKILL after ``timeout``."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("supervisord did not exit within %.0fs: SIGKILL", timeout)
            self.proc.kill()
            self.proc.wait()


def is_role_process(pid: int) -> bool:
    """True if ``pid`` runs a role under the daemon (not a recycled pid of something else)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"eventd.daemon.child" in fh.read()
    except OSError:
        return False


def stop_orphans(pids: list[int], timeout: float) -> None:
    """Stop role processes supervisord left behind when it died: SIGTERM, SIGKILL after ``timeout``."""
    pids = [p for p in pids if is_role_process(p)]
    kill_pids(pids, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(is_role_process(p) for p in pids):
        time.sleep(0.2)
    kill_pids([p for p in pids if is_role_process(p)])


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    """Signal processes that may be gone already."""
    for pid in pids:
        if pid > 0:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
