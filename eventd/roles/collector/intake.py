"""From input lines to queue records: validate (the shared EventParser), encode (Avro single-object),
append — the one path every input takes.

Contract of :meth:`Intake.ingest`: each line is accepted or rejected on its own (a bad line never
affects the good ones beside it); the accepted ones are appended as ONE batch, all or nothing. When
the queue refuses the batch (full, disk full, I/O error), nothing of it is in the queue and the
caller tells its client to send it again (HTTP 503 / an error answer line).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from eventd.errors import InvalidEvent
from eventd.event.envelope import EventParser
from eventd.roles.collector import stats
from eventd.roles.collector.lines import Line, TooLong
from eventd.roles.collector.queue import DurableQueue, QueueError
from eventd.roles.collector.records import payload

log = logging.getLogger(__name__)

IdsFor = Callable[[int], str]   # line number → event id, for inputs whose ids must be reproducible


@dataclass
class Outcome:
    """What became of one batch of lines."""

    accepted: int = 0
    rejected: int = 0
    refused: int = 0                      # valid events the queue did not take (send again later)
    errors: list[dict[str, Any]] = field(default_factory=list)   # {"line": n, "error": reason}, capped
    end: int = 0                          # queue seq after the batch (for fsync waits); 0 if nothing appended
    refusal: str = ""                     # why the batch was refused

    def answer(self) -> dict[str, Any]:
        """The JSON answer for clients."""
        out: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors}
        if self.refused:
            out["refused"] = self.refused
            out["error"] = self.refusal
        return out


def new_id_factory() -> Callable[[], str]:
    """Event ids for events that came without one: 16 random hex digits per process start, then a
    hex counter — unique across hosts and restarts, and far cheaper than a uuid4 per event."""
    prefix = secrets.token_hex(8)
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):08x}"


class Intake:
    """Parse, encode and append batches of lines; counts everything in the metrics."""

    def __init__(self, parser: EventParser, queue: DurableQueue, max_errors: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._parser, self._queue, self._max_errors, self._clock = parser, queue, max_errors, clock
        self._make_id = new_id_factory()
        self._full_at = -1              # queue size when a batch was last refused; -1: not refusing

    @property
    def full(self) -> bool:
        """Whether new events are being refused: until one is taken again or the queue shrank."""
        if self._full_at >= 0 and self._queue.size_bytes < self._full_at:
            self._full_at = -1
        return self._full_at >= 0

    def ingest(self, lines: Sequence[Line], input_name: str, first_line: int = 1,
               ids_for: IdsFor | None = None) -> Outcome:
        """Validate ``lines`` (numbered from ``first_line``), append the valid ones, report on all."""
        out = Outcome()
        received = int(self._clock() * 1000)
        parse, make_id = self._parser.parse, self._make_id
        records: list[bytes] = []
        add = records.append
        for n, line in enumerate(lines, first_line):
            if type(line) is not bytes:
                self._reject(out, n, self._too_long(line))  # type: ignore[arg-type]
                continue
            if not line or line.isspace():
                continue
            try:
                event = parse(line, input_name, received, make_id if ids_for is None else _id_of(ids_for, n))
            except InvalidEvent as exc:
                self._reject(out, n, exc)
                continue
            add(payload(event.topic, event.key, event.value))
        if records:
            self._append(out, records, input_name)
        return out

    def _too_long(self, line: TooLong) -> InvalidEvent:
        return InvalidEvent(f"line of {line.size} bytes is over the limit of {self._parser.events.max_line_size}")

    def _append(self, out: Outcome, records: list[bytes], input_name: str) -> None:
        try:
            out.end = self._queue.append(records)
        except QueueError as exc:
            out.refused, out.refusal = len(records), str(exc)
            stats.rejected("queue_full").inc(len(records))
            if self._full_at < 0:
                log.warning("REFUSING EVENTS: %s; clients are told to send them again (HTTP 503)", exc)
            self._full_at = self._queue.size_bytes
            return
        out.accepted = len(records)
        stats.events_in(input_name).inc(len(records))
        if self._full_at >= 0:
            log.info("the queue takes events again (%d bytes queued)", self._queue.size_bytes)
            self._full_at = -1

    def _reject(self, out: Outcome, line: int, exc: InvalidEvent) -> None:
        out.rejected += 1
        stats.rejected(_reason_label(exc)).inc()
        if len(out.errors) < self._max_errors:
            out.errors.append({"line": line, "error": str(exc)})


def _id_of(ids_for: IdsFor, n: int) -> Callable[[], str]:
    return lambda: ids_for(n)


_REASONS = (("line of", "size"), ("invalid UTF-8", "utf8"), ("not valid JSON", "json"),
            ("expected a JSON object", "not_object"), ("cannot encode", "encode"))


def _reason_label(exc: InvalidEvent) -> str:
    """A low-cardinality metric label: the field at fault, or the kind of problem."""
    if exc.field:
        return f"field:{exc.field}"[:80]
    for prefix, label in _REASONS:
        if exc.reason.startswith(prefix):
            return label
    return "invalid"
