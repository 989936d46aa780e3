"""One replay run: every input, line by line, through the collector's parser into a target.

Per line: read → validate and wrap (:class:`EventParser`, input ``"replay"``, ids from
:mod:`eventd.replay.ids` when the line has none) → reject (counted, written) or hand to the
target. Every :data:`CHECKPOINT_LINES` lines or :data:`CHECKPOINT_BYTES` bytes a checkpoint
is marked; the target returns it once the destination has durably taken everything before
it, and only then is it appended to the input's ledger. On a re-run the ledger tells which
prefix is already delivered (:class:`~eventd.replay.ledger.Resumer`): those lines are still
read and validated (so rejects and ids come out the same), but not delivered again.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

from eventd.errors import InvalidEvent
from eventd.event.envelope import Event, EventParser
from eventd.replay.ids import IdMaker
from eventd.replay.ledger import Checkpoint, Ledger, Resumer, Step, stream_key
from eventd.replay.progress import Progress
from eventd.replay.reader import Input, Line, LineReader
from eventd.replay.rejects import Rejects
from eventd.replay.sinks import Target
from eventd.replay.summary import Counts

INPUT_NAME = "replay"
CHECKPOINT_LINES = 1000
CHECKPOINT_BYTES = 1 << 20


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

    def run_input(self, inp: Input) -> None:
        """Replay one input to its end, or until ``stop`` is set."""
        self.counts.files += 1
        self.progress.start_file(inp.name, inp.size, inp.position)
        reader = LineReader(inp.stream, self._max)
        ledger = self._ledger(stream_key(reader.head)) if self._ledger_dir else None
        resumer = Resumer(ledger) if ledger is not None else None
        ids, held = IdMaker(), []
        mark_line = mark_offset = 0
        for line in reader:
            self.progress.tick()
            self.counts.read += 1
            event = self._parse(inp.name, line, ids)
            if resumer is not None and resumer.active:
                if event is not None:
                    held.append(event)
                step = resumer.step(reader.offset, reader.prefix_digest)
                if step is Step.DELIVERED:
                    self.counts.delivered_before += len(held)
                    held.clear()
                    mark_line, mark_offset = reader.lines, reader.offset
                if step is not Step.NEW:
                    if self.stop.is_set():
                        return   # held events are neither delivered nor marked: the next run re-checks them
                    continue
                self._deliver(held)
                held = []
            elif event is not None:
                self._deliver([event])
            if reader.lines - mark_line >= CHECKPOINT_LINES or reader.offset - mark_offset >= CHECKPOINT_BYTES:
                self._mark(ledger, reader)
                mark_line, mark_offset = reader.lines, reader.offset
            if self.stop.is_set():
                break
        self._deliver(held)   # the input ended before the next recorded checkpoint: these are new
        if reader.offset > mark_offset:
            self._mark(ledger, reader)

    def _parse(self, name: str, line: Line, ids: IdMaker) -> Event | None:
        data = line.data
        try:
            if data is None:
                raise InvalidEvent(f"line of {line.size} bytes is over the limit of {self._max}")
            if not data or data.isspace():
                self.counts.blank += 1
                return None
            return self.parser.parse(data, INPUT_NAME, int(self._clock() * 1000), lambda: ids.make(data))
        except InvalidEvent as exc:
            self.counts.reject(exc)
            self.rejects.add(name, line.number, exc, data, line.size)
            return None

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            self.target.add(event)
        self.counts.accepted += len(events)

    def _mark(self, ledger: Ledger | None, reader: LineReader) -> None:
        if ledger is None:
            return
        self.target.mark(Checkpoint(ledger, reader.offset, reader.lines, reader.prefix_digest()))
        self._record(self.target.completed())

    def _ledger(self, key: str) -> Ledger:
        """The input's ledger; the same content twice in one run reuses it once all is acknowledged."""
        if key in self._ledgers:
            self.finish()
            return self._ledgers[key]
        assert self._ledger_dir is not None
        ledger = self._ledgers[key] = Ledger.open(self._ledger_dir, key)
        return ledger

    def _record(self, checkpoints: list[Checkpoint]) -> None:
        by_ledger: dict[int, list[Checkpoint]] = {}
        for cp in checkpoints:
            by_ledger.setdefault(id(cp.ledger), []).append(cp)
        for cps in by_ledger.values():
            cps[0].ledger.record(cps)

    def finish(self) -> None:
        """Wait until the target has durably taken everything, and record the last checkpoints."""
        self._record(self.target.finish())

    def close(self) -> None:
        for ledger in self._ledgers.values():
            ledger.close()
