"""One replay run: every input, line by line, through the collector's parser into a target.

Per line, exactly as the collector's intake: read → validate, wrap and encode (Avro
single-object) with :class:`EventParser` (input ``"replay"``, ids from :mod:`eventd.replay.ids`
when the line has none) → reject (counted, written) or hand the event and its bytes to the
target. Every ``target.block_lines`` lines or ``target.block_bytes``
bytes a checkpoint is marked; once the destination has durably taken everything before it
the target reports it and it is appended to the input's ledger.

On a re-run the ledger tells which prefix is already delivered
(:class:`~eventd.replay.ledger.Resumer`): those lines are still read and validated (so ids,
rejects and the sinks' duplicate windows come out the same) but not delivered again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from eventd.errors import DecodeError, InvalidEvent
from eventd.event.envelope import Event, EventParser
from eventd.replay.ids import IdMaker
from eventd.replay.ledger import Checkpoint, Ledger, Resumer, Step, stream_key
from eventd.replay.progress import Progress
from eventd.replay.reader import Input, Line, LineReader
from eventd.replay.rejects import Rejects
from eventd.replay.sinks import ReplayFailed, Target
from eventd.replay.summary import Counts

log = logging.getLogger(__name__)
INPUT_NAME = "replay"


@dataclass(frozen=True, slots=True)
class Item:
    """A valid line: its event (encoded) and the line (for a late reject)."""

    event: Event
    line: Line


class _Input:
    """The state of the input being replayed."""

    def __init__(self, name: str, reader: LineReader, ledger: Ledger | None, received_ms: int | None) -> None:
        self.name, self.reader, self.ledger = name, reader, ledger
        self.resumer = Resumer(ledger) if ledger is not None else None
        self.received_ms = received_ms
        self.ids = IdMaker()
        self.held: list[Item] = []
        self.mark_line = self.mark_offset = 0

    @property
    def resuming(self) -> bool:
        return self.resumer is not None and self.resumer.active


class Pipeline:
    """Replays inputs one after the other into ``target``; :meth:`finish` waits for the last acks."""

    def __init__(self, parser: EventParser, target: Target, counts: Counts, rejects: Rejects,
                 progress: Progress, stop: threading.Event, ledger_root: str | None, max_line_size: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.parser, self.target, self.counts = parser, target, counts
        self.rejects, self.progress, self.stop = rejects, progress, stop
        self._ledger_dir = os.path.join(ledger_root, target.key) if ledger_root and target.key else None
        self._max, self._clock = max_line_size, clock
        self._ledgers: dict[str, Ledger] = {}
        target.on_durable = self._record

    def run_input(self, inp: Input) -> None:
        """Replay one input to its end, or until ``stop`` is set."""
        self.counts.files += 1
        self.progress.start_file(inp.name, inp.size, inp.position)
        reader = LineReader(inp.stream, self._max)
        key = stream_key(reader.head)
        ledger = self._ledger(key) if self._ledger_dir else None
        state = _Input(inp.name, reader, ledger, ledger.received_ms if ledger else None)
        self.target.begin(key)
        for line in reader:
            self.progress.tick()
            self.counts.read += 1
            item = self._parse(state, line)
            if state.resuming:
                if not self._resume(state, item):
                    continue
            elif item is not None:
                self._deliver(state, [item])
            if reader.lines - state.mark_line >= self.target.block_lines or \
                    reader.offset - state.mark_offset >= self.target.block_bytes:
                self._mark(state)
            if self.stop.is_set():
                break
        self._end(state)

    def _resume(self, state: _Input, item: Item | None) -> bool:
        """Re-run over a ledger: hold the line until its fate is known; True once past what
        was delivered before (the caller goes on as for a new line)."""
        if item is not None:
            state.held.append(item)
        assert state.resumer is not None
        step = state.resumer.step(state.reader.offset, state.reader.prefix_digest)
        if step is Step.HOLD:
            return False
        if step is Step.DELIVERED:
            for done in state.held:
                self.target.warm(done.event, done.event.value, done.line.number)
            self.counts.delivered_before += len(state.held)
            state.held.clear()
            state.mark_line, state.mark_offset = state.reader.lines, state.reader.offset
            return False
        if step is Step.CHANGED:
            self._changed(state)
        held, state.held = state.held, []
        self._deliver(state, held)
        return True

    def _changed(self, state: _Input) -> None:
        """The input differs from what an earlier run delivered (the file was edited)."""
        where = f"{state.name}: the content differs from what an earlier replay delivered, at line " \
                f"{state.reader.lines} (after line {state.mark_line}, delivered and unchanged)"
        if not self.target.streaming:
            raise ReplayFailed(f"{where}; {self.target.name} would get the events after it twice. Replay only "
                               f"the new or fixed lines, as a separate file (see docs/roles/replay.md)")
        log.warning("%s: sending again from there; the consumers drop re-sent event ids within their "
                    "duplicate windows", where)

    def _end(self, state: _Input) -> None:
        """End of input (or stop): deliver what is held, mark the tail."""
        stopped = self.stop.is_set()
        if state.resuming and stopped:
            return   # held events are neither delivered nor marked: the next run checks them again
        self._deliver(state, state.held)   # input ended before the next recorded checkpoint: new
        state.held = []
        if state.reader.offset > state.mark_offset and (self.target.streaming or not stopped):
            self._mark(state)

    def _parse(self, state: _Input, line: Line) -> Item | None:
        """The line's event and its encoding, or None (blank, or rejected: counted and written)."""
        data = line.data
        try:
            if data is None:
                raise InvalidEvent(f"line of {line.size} bytes is over the limit of {self._max}")
            if not data or data.isspace():
                self.counts.blank += 1
                return None
            received = state.received_ms or int(self._clock() * 1000)
            ids = state.ids
            event = self.parser.parse(data, INPUT_NAME, received, lambda: ids.make(data))
            return Item(event, line)
        except InvalidEvent as exc:
            self._reject(state, line, exc)
            return None

    def _reject(self, state: _Input, line: Line, exc: InvalidEvent) -> None:
        self.counts.reject(exc)
        self.rejects.add(state.name, line.number, exc, line.data, line.size)

    def _deliver(self, state: _Input, items: list[Item]) -> None:
        add = self.target.add
        for item in items:
            try:
                add(item.event, item.event.value, item.line.number)
            except (InvalidEvent, DecodeError) as exc:   # the sink refuses this event (as its role would)
                self._reject(state, item.line, InvalidEvent(f"{self.target.name}: {exc}"))
                continue
            self.counts.accepted += 1

    def _mark(self, state: _Input) -> None:
        reader = state.reader
        if state.ledger is not None:
            self.target.mark(Checkpoint(state.ledger, reader.offset, reader.lines, reader.prefix_digest(),
                                        state.mark_line))
        state.mark_line, state.mark_offset = reader.lines, reader.offset

    def _ledger(self, key: str) -> Ledger:
        """The input's ledger; the same content twice in one run reuses it once all is acknowledged."""
        if key in self._ledgers:
            self.finish()
            return self._ledgers[key]
        assert self._ledger_dir is not None
        ledger = self._ledgers[key] = Ledger.open(self._ledger_dir, key, int(self._clock() * 1000))
        return ledger

    def _record(self, checkpoints: list[Checkpoint]) -> None:
        """Called by the target (any thread) with checkpoints the destination durably has."""
        by_ledger: dict[int, list[Checkpoint]] = {}
        for cp in checkpoints:
            by_ledger.setdefault(id(cp.ledger), []).append(cp)
        for cps in by_ledger.values():
            cps[0].ledger.record(cps)

    def finish(self) -> None:
        """Wait until the target has durably taken everything (its checkpoints are recorded)."""
        self.target.finish()

    def close(self) -> None:
        for ledger in self._ledgers.values():
            ledger.close()
