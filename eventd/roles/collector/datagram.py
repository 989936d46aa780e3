"""UDP and unix datagram inputs: one JSON object per datagram, no answer.

Datagrams are fire-and-forget: the sender learns nothing, so an event is only as safe as the
datagram that carried it (UDP may drop under load; the kernel's receive buffer is enlarged). Bad
events and events refused by a full queue are counted in the metrics and summarised in the log
(at most one line per 10 s), since there is no client to tell. Datagrams that arrive together are
appended as one batch (one write for many events).
"""

from __future__ import annotations

import asyncio
import logging
import time

from eventd.roles.collector.intake import Intake, Outcome

log = logging.getLogger(__name__)

MAX_BATCH = 5000
LOG_EVERY = 10.0


class DatagramProtocol(asyncio.DatagramProtocol):
    """Collects the datagrams of one loop iteration and ingests them together."""

    def __init__(self, intake: Intake, input_name: str) -> None:
        self.intake, self.input_name = intake, input_name
        self._pending: list[bytes] = []
        self._scheduled = False
        self._loop = asyncio.get_running_loop()
        self._problems = 0
        self._example = ""
        self._logged_at = 0.0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._pending.append(data)
        if len(self._pending) >= MAX_BATCH:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def error_received(self, exc: Exception) -> None:
        log.warning("%s: receive error: %s", self.input_name, exc)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._report(self.intake.ingest(batch, self.input_name))

    def _report(self, outcome: Outcome) -> None:
        lost = outcome.rejected + outcome.refused
        if not lost:
            return
        self._problems += lost
        if not self._example:
            self._example = outcome.refusal or (outcome.errors[0]["error"] if outcome.errors else "")
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            log.warning("%s: %d events not taken in the last %.0fs, e.g.: %s", self.input_name,
                        self._problems, min(now - self._logged_at, 1e6), self._example)
            self._problems, self._example, self._logged_at = 0, "", now
