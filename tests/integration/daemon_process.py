"""A daemon process under test — ``eventd run`` itself or a stand-in — and the eventd commands
that talk to it: status, waiting for a state, stopping, and cleaning up after a failed test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]

Procs = dict[str, dict[str, Any]]    # "role-slot" → that process's entry of `eventd status --json`


class DaemonProcess:
    """``argv`` started now, its output appended to ``log_path``. ``marker`` is a part of the command
    line of its role processes: :meth:`close` kills those a failed test left behind."""

    def __init__(self, argv: list[str], config: Path, log_path: Path, marker: bytes) -> None:
        self.config, self.log_path, self._marker = config, log_path, marker
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    def eventd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "eventd", *args, "-c", str(self.config)], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> tuple[int, dict[str, Any]]:
        r = self.eventd("status", "--json")
        return r.returncode, json.loads(r.stdout)

    def procs(self) -> Procs:
        return {f"{p['role']}-{p['slot']}": p for p in self.status()[1]["processes"]}

    def wait(self, predicate: Callable[[Procs], bool], timeout: float, what: str) -> Procs:
        """The status once ``predicate`` holds; fails if the daemon exits or ``timeout`` passes first."""
        end, last = time.monotonic() + timeout, {}
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"the daemon exited {self.proc.returncode}:\n{self.log()[-5000:]}"
            last = self.procs()
            if predicate(last):
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; status: {last}\n{self.log()[-5000:]}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 90) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the stop took."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - t0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Stop it if a test left it running; kill whatever role process survives."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for rec in (self.config.parent / "run" / "procs").glob("*.json"):
            pid = json.loads(rec.read_text()).get("pid", 0)
            try:
                if pid and self._marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._log.close()


def all_running(expected: set[str]) -> Callable[[Procs], bool]:
    """Every expected process (perhaps among others) RUNNING and serving metrics: its role code runs
    (RUNNING alone only means "up for start_seconds", which a slow interpreter start can outlast)."""
    return lambda procs: expected <= set(procs) and all(
        procs[n]["state"] == "RUNNING" and procs[n]["events_per_second"] is not None for n in expected)
