"""TCP and unix stream inputs: NDJSON in, one answer line out per batch of lines.

Protocol: the client writes events, one JSON object per line. After the collector has taken a
batch of lines (whatever arrived together), it writes one answer line in the HTTP answer's shape:
``{"accepted":N,"rejected":M,"errors":[{"line":i,"error":"…"}]}`` — plus ``"refused":K,"error":"…"``
when the queue refused the batch's K valid events (send them again). Line numbers count from 1
for the connection. Answers come in order and cover every line once; a client that needs
acknowledgement counts ``accepted + rejected + refused`` up to its line (blank lines are ignored and
not counted; a batch of only blank lines gets no answer). A client may half-close
(shutdown SHUT_WR) and read the remaining answers; the last line may lack its newline.
"""

from __future__ import annotations

import asyncio
import json

from eventd.roles.collector.connections import Connection, Connections
from eventd.roles.collector.intake import Intake, Outcome
from eventd.roles.collector.lines import Line, LineSplitter
from eventd.roles.collector.syncer import Syncer


class StreamProtocol(Connection):
    """One TCP or unix stream connection."""

    def __init__(self, connections: Connections, intake: Intake, syncer: Syncer, input_name: str,
                 max_line: int) -> None:
        super().__init__(connections)
        self.intake, self.syncer, self.input_name = intake, syncer, input_name
        self._lines = LineSplitter(max_line)
        self._next_line = 1
        self._eof = False
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.touch()
        lines = self._lines.feed(data)
        if lines:
            self._ingest(lines)

    def eof_received(self) -> bool:
        self._eof = True
        lines = self._lines.finish()
        if lines:
            self._ingest(lines)
        if not self.waiting:
            self.shutdown()
        return True     # keep the transport open to write the last answers

    def _ingest(self, lines: list[Line]) -> None:
        outcome = self.intake.ingest(lines, self.input_name, self._next_line)
        self._next_line += len(lines)
        if outcome.end and self.syncer.waits:
            self.begin_wait()
            self.syncer.when_synced(outcome.end, lambda: self._loop.call_soon_threadsafe(self._synced, outcome))
        else:
            self._answer(outcome)

    def _synced(self, outcome: Outcome) -> None:
        self.end_wait()
        self._answer(outcome)
        if self._eof and not self.waiting:
            self.shutdown()

    def _answer(self, outcome: Outcome) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not (outcome.accepted or outcome.rejected or outcome.refused):
            return      # only blank lines
        if outcome.rejected or outcome.refused:
            line = json.dumps(outcome.answer(), separators=(",", ":")) + "\n"
        else:
            line = f'{{"accepted":{outcome.accepted},"rejected":0,"errors":[]}}\n'
        self.transport.write(line.encode())
