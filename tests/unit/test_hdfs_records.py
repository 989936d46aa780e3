"""Messages → archived record bodies: passed through untouched when in the latest schema,
resolved and re-encoded from an older version, refused (→ dead letter) when undecodable."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fastavro import schemaless_reader

from eventd.errors import DecodeError
from eventd.event.codec import encode
from eventd.event.schemas import SchemaStore
from eventd.kafka.batch import Message
from eventd.roles.hdfs_uploader.layout import GroupKey, hour_of
from eventd.roles.hdfs_uploader.records import RecordReader, read_envelope

SCHEMAS = Path(__file__).resolve().parents[2] / "conf" / "schemas"
STORE = SchemaStore.load(str(SCHEMAS))
T = 1_795_000_000_000


def topic_of(family: str) -> str:
    return f"events.{family}"


def record(etype: str = "click", **over: object) -> dict:
    r = {"id": "e1", "type": etype, "time": T, "received": T, "host": "h", "input": "test", "schema_version": 1,
         "campaign_id": 5, "cost": 1500, "revenue": 700, "extra": {}}
    r.update(over)
    return r


def message(value: bytes, topic: str = "events.click", offset: int = 7) -> Message:
    return Message(topic, 0, offset, b"k", value, 0)


@pytest.mark.parametrize("verify", [True, False])
def test_latest_schema_body_goes_in_untouched(verify: bool) -> None:
    entry = STORE.latest["click"]
    value = encode(entry, record())
    got = RecordReader(STORE, verify, topic_of).read(message(value))
    assert got.body == value[10:]
    assert got.offset == 7 and got.schema is entry
    assert got.key == GroupKey("click", hour_of(T))


def test_generic_records_go_to_their_own_type() -> None:
    entry = STORE.latest["_generic"]
    value = encode(entry, {**record("signup"), "bid": 0})
    got = RecordReader(STORE, True, topic_of).read(message(value, topic="events._generic"))
    assert got.key.type == "signup" and got.schema is entry


@pytest.mark.parametrize("value, reason", [
    (b"garbage", "missing C3 01"),
    (b"\xc3\x01" + b"\x00" * 8 + b"x", "unknown writer schema"),
])
def test_undecodable_messages_are_refused(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        RecordReader(STORE, True, topic_of).read(message(value))


def test_corrupt_body_is_caught_only_when_verifying() -> None:
    value = encode(STORE.latest["click"], record())
    truncated = value[:-3]
    with pytest.raises(DecodeError, match="corrupt|trailing"):
        RecordReader(STORE, True, topic_of).read(message(truncated))
    # Without verification the envelope still reads: only use it when every producer is eventd.
    assert RecordReader(STORE, False, topic_of).read(message(truncated)).key.type == "click"
    with pytest.raises(DecodeError, match="trailing"):
        RecordReader(STORE, True, topic_of).read(message(value + b"\x00"))


def test_a_record_on_another_schemas_topic_is_refused() -> None:
    value = encode(STORE.latest["click"], record())
    with pytest.raises(DecodeError, match="on topic events.impression"):
        RecordReader(STORE, True, topic_of).read(message(value, topic="events.impression"))


def test_type_field_must_match_the_schema_and_be_a_type_name() -> None:
    reader = RecordReader(STORE, True, topic_of)
    with pytest.raises(DecodeError, match="in a record of the click schema"):
        reader.read(message(encode(STORE.latest["click"], record(etype="impression"))))
    with pytest.raises(DecodeError, match="not a valid type name"):
        reader.read(message(encode(STORE.latest["_generic"], {**record("../etc"), "bid": 0}),
                            topic="events._generic"))


def test_event_time_without_a_date_is_refused() -> None:
    with pytest.raises(DecodeError, match="outside years"):
        RecordReader(STORE, True, topic_of).read(message(encode(STORE.latest["click"], record(time=2**62))))


def test_read_envelope_rejects_truncation() -> None:
    body = encode(STORE.latest["click"], record())[10:]
    assert read_envelope(body) == ("click", T)
    with pytest.raises(DecodeError, match="truncated"):
        read_envelope(body[:5])


def test_older_version_is_resolved_to_the_latest_and_re_encoded(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "s")
    v1 = json.loads((SCHEMAS / "click.v1.avsc").read_text())
    v2 = json.loads(json.dumps(v1))
    v2["fields"].insert(-1, {"name": "placement", "type": ["null", "string"], "default": None})
    (tmp_path / "s" / "click.v2.avsc").write_text(json.dumps(v2))
    store = SchemaStore.load(str(tmp_path / "s"))
    old, new = next(e for e in store.by_fingerprint.values() if e.type == "click" and e.version == 1), \
        store.latest["click"]
    got = RecordReader(store, True, topic_of).read(message(encode(old, record())))
    assert got.schema is new
    decoded = schemaless_reader(io.BytesIO(got.body), new.schema, None)
    assert decoded["placement"] is None and decoded["cost"] == 1500 and decoded["id"] == "e1"
