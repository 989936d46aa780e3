"""sd_notify(3) without libsystemd: READY, RELOADING, STOPPING, STATUS and WATCHDOG datagrams to
``$NOTIFY_SOCKET``. Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]   # abstract namespace
        self.watchdog_interval = self._watchdog(env)
        self._last_ping = 0.0

    @staticmethod
    def _watchdog(env: Mapping[str, str]) -> float | None:
        """Seconds between pings: half of ``$WATCHDOG_USEC``, if the watchdog is meant for us."""
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self.address)
                s.sendall("\n".join(fields).encode())
        except OSError as exc:   # systemd gone or the socket not ours: never fatal
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets newer systemd (Type=notify-reload) match the reload to this message.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping the watchdog if it is due; call this only while supervision works."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")
