"""What the rules see of an event: its type, times, input, and only the fields some rule keys on.

Decoding keeps the whole Avro record only for the moment of projection, so a batch waiting in the
consumer loop holds a few small values per event instead of full records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from eventd.config.monitor import ALL


@dataclass(frozen=True, slots=True)
class Observation:
    type: str
    time: int          # event time, epoch ms (set by the ad server)
    received: int      # epoch ms, stamped by the collector when it accepted the event
    input: str         # the collector input (http, tcp, ..., replay)
    fields: dict[str, Any]

    def key(self, by: str) -> Any:
        """The value of field ``by`` (None when the event has no such field or it is null)."""
        return ALL if by == ALL else self.fields.get(by)


class Projector:
    """Builds observations that carry the fields named in ``fields`` (the rules' ``by``)."""

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = tuple(sorted({f for f in fields if f != ALL}))

    def project(self, record: dict[str, Any]) -> Observation:
        return Observation(record["type"], record["time"], record["received"], record["input"],
                           {f: record.get(f) for f in self.fields})
