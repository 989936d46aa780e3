"""From a Kafka message to the record body that goes into a container file, and where it goes.

Messages are Avro single-object encoded (codec.py). A file holds records of one writer schema:
the *latest* version of the message's schema family (its event type, or ``_generic``), so all
files of a type written at one time share a schema, and a flush never needs two files for one
(type, hour). Bodies already in that schema go into the file as they are (no re-encoding);
bodies of an older version are resolved to the latest (Avro schema resolution: new fields take
their defaults) and re-encoded — which happens only while producers roll out a new version.

With ``verify_records`` (the default) every body is decoded once before it is archived: a
corrupt body would make the rest of its file unreadable, so it goes to the dead-letter topic
instead. Without it only the header, fingerprint and envelope prefix (id, type, time) are
checked, about twice as fast; use it only when every producer is eventd itself.
"""

from __future__ import annotations

import io
from typing import Any, Callable, NamedTuple

from fastavro import schemaless_reader

from eventd.errors import DecodeError
from eventd.event.binary import compile_projection
from eventd.event.codec import Decoder, decode_body, read_long, read_string
from eventd.event.schemas import GENERIC, SchemaEntry, SchemaStore
from eventd.kafka.batch import Message
from eventd.roles.hdfs_uploader.layout import TYPE_RE, GroupKey, hour_of


class Record(NamedTuple):
    """One record to archive: its offset, its file's (type, hour), the file's schema, the body
    (a tuple: one is built per message)."""

    offset: int
    key: GroupKey
    schema: SchemaEntry
    body: bytes


class RecordReader:
    """Turns messages into :class:`Record`; raises :class:`DecodeError` saying why it cannot.

    ``topic_of(family)`` is the topic a schema family is routed to: a record found on another
    topic is refused, so one topic never mixes two families' records of one event type (which
    would need two files of one name)."""

    def __init__(self, store: SchemaStore, verify: bool, topic_of: Callable[[str], str]) -> None:
        self.store, self.verify, self.topic_of = store, verify, topic_of
        self._decoder = Decoder(store)
        # Per schema, the whole record checked as the full reader does, only type and time kept
        # (compiled only when records are verified).
        self._checks = {fp: compile_projection(entry.raw, ("type", "time"), verify=True)
                        for fp, entry in store.by_fingerprint.items()} if verify else {}

    def read(self, msg: Message) -> Record:
        entry, view = self._decoder.split(msg.value)
        if self.topic_of(entry.type) != msg.topic:
            raise DecodeError(f"a record of the {entry.type} schema on topic {msg.topic}, "
                              f"where that schema's records go to {self.topic_of(entry.type)}")
        target = self.store.latest[entry.type]
        body = bytes(view)
        if entry is not target:
            record = self._resolve(entry, body, target)
            body = target.write(record)
            event_type, time_ms = record["type"], record["time"]
        elif self.verify:
            event_type, time_ms = decode_body(entry, body, 0, self._checks[entry.fingerprint])
        else:
            event_type, time_ms = read_envelope(body)
        return Record(msg.offset, self._key(entry, event_type, time_ms), target, body)

    def _key(self, entry: SchemaEntry, event_type: str, time_ms: int) -> GroupKey:
        if entry.type != GENERIC:
            if event_type != entry.type:    # (a schema's type is a valid name: its file name says so)
                raise DecodeError(f"event type {event_type[:80]!r} in a record of the {entry.type} schema")
        elif not TYPE_RE.match(event_type):
            raise DecodeError(f"event type {event_type[:80]!r} is not a valid type name")
        try:
            return GroupKey(event_type, hour_of(time_ms))
        except ValueError as exc:
            raise DecodeError(str(exc)) from None

    def _resolve(self, entry: SchemaEntry, body: bytes, reader: SchemaEntry) -> dict[str, Any]:
        """An older version's body as a record of ``reader`` (Avro schema resolution: fastavro)."""
        stream = io.BytesIO(body)
        try:
            record = schemaless_reader(stream, entry.schema, reader.schema)
        except Exception as exc:   # fastavro raises assorted types on corrupt input
            raise DecodeError(f"corrupt or unresolvable Avro body for {entry.type} v{entry.version} as "
                              f"v{reader.version}: {type(exc).__name__}: {exc}") from None
        if stream.tell() != len(body):
            raise DecodeError(f"{len(body) - stream.tell()} trailing bytes after the {entry.type} record")
        return record


def read_envelope(body: bytes) -> tuple[str, int]:
    """(type, time) from the envelope prefix — id (string), type (string), time (long) — without
    decoding the rest; :class:`DecodeError` if the prefix is malformed."""
    pos, _ = read_string(body, 0)
    pos, raw_type = read_string(body, pos)
    _, time_ms = read_long(body, pos)
    try:
        return raw_type.decode("ascii"), time_ms
    except UnicodeDecodeError:
        raise DecodeError("event type is not ASCII") from None
