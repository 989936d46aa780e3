"""The event format: validation, money in micro-units, and the single-object Avro codec
checked against the official ``avro`` library from the schema files alone."""

from __future__ import annotations

import io
import json
from pathlib import Path

import avro.io
import avro.schema
import fastavro
import pytest

from eventd.config import load_config
from eventd.errors import DecodeError, InvalidEvent
from eventd.event.codec import MAGIC, Decoder, encode
from eventd.event.envelope import EventParser, parse_time
from eventd.event.money import format_micros, to_micros
from eventd.event.schemas import SchemaStore

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(CFG.events.schema_dir)
PARSER = EventParser(STORE, CFG.events, "events.", 6, "web1")


def parse(obj: dict | bytes, input_name: str = "tcp") -> object:
    line = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return PARSER.parse(line, input_name, 1_700_000_000_000, lambda: "assigned-id")


def official_decode(data: bytes, event_type: str) -> dict:
    """Decode with the official avro library, using only the schema file and the header."""
    path = REPO / "conf" / "schemas" / f"{event_type}.v1.avsc"
    schema = avro.schema.parse(path.read_text())
    assert data[:2] == MAGIC and data[2:10] == schema.fingerprint("CRC-64-AVRO")
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))


def test_envelope_and_payload() -> None:
    ev = parse({"type": "impression", "time": "2026-11-27T10:00:00+01:00", "campaign_id": 7, "site_id": "12",
                "cost": "0.0015", "revenue": 0.001, "color": "red", "tags": [1, 2]})
    r = ev.record
    assert (r["id"], r["type"], r["host"], r["input"], r["schema_version"]) == ("assigned-id", "impression", "web1", "tcp", 1)
    assert r["time"] == 1_795_770_000_000
    assert (r["campaign_id"], r["site_id"], r["cost"], r["revenue"]) == (7, 12, 1500, 1000)
    assert r["extra"] == {"color": "red", "tags": "[1, 2]"}
    assert ev.topic == "events.impression" and ev.key == b"7"


@pytest.mark.parametrize("event_type", ["impression", "click", "conversion", "bid"])
def test_official_avro_decodes_what_we_encode(event_type: str) -> None:
    ev = parse({"type": event_type, "time": 1_764_237_600, "id": "e-1", "campaign_id": 3,
                "cost": "123456.654321", "revenue": "0.000001", "bid": "2.5", "value": 9, "x": "y"})
    data = encode(ev.schema, ev.record)
    got = official_decode(data, event_type)
    assert got == ev.record
    money = {k: got[k] for k in ev.schema.money_fields}
    expected = {"cost": 123_456_654_321, "revenue": 1, "bid": 2_500_000, "value": 9_000_000}
    assert money == {k: expected[k] for k in money}


def test_fastavro_and_official_avro_write_identical_bytes() -> None:
    ev = parse({"type": "click", "time": 1_764_237_600_123, "campaign_id": 1, "cost": 1, "ip": "1.2.3.4"})
    schema = avro.schema.parse(Path(ev.schema.path).read_text())
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(ev.record, avro.io.BinaryEncoder(buf))
    assert encode(ev.schema, ev.record)[10:] == buf.getvalue()


def test_unknown_type_is_carried_with_the_generic_schema() -> None:
    ev = parse({"type": "video_view", "time": 1_764_237_600, "cost": "0.5", "seconds": 12})
    assert ev.schema.type == "_generic" and ev.topic == "events._generic"
    entry, record = Decoder(STORE).decode(encode(ev.schema, ev.record))
    assert record["type"] == "video_view" and record["cost"] == 500_000 and record["extra"] == {"seconds": "12"}


@pytest.mark.parametrize("line,field,reason", [
    (b'{"type":"click","time":1', None, "not valid JSON"),
    (b'\xff\xfe{"type":"click"}', None, "invalid UTF-8 at byte 0"),
    (b'[1,2]', None, "expected a JSON object"),
    (b'{"time":1764237600}', "type", "missing"),
    (b'{"type":"Click!","time":1764237600}', "type", "is not an event type"),
    (b'{"type":"click"}', "time", "missing"),
    (b'{"type":"click","time":"yesterday"}', "time", "is not ISO-8601"),
    (b'{"type":"click","time":"2026-11-27T10:00:00"}', "time", "has no UTC offset"),
    (b'{"type":"click","time":1764237600,"cost":"abc"}', "cost", "money must be a number"),
    (b'{"type":"click","time":1764237600,"cost":-1}', "cost", "must not be negative"),
    (b'{"type":"click","time":1764237600,"cost":NaN}', None, "not valid JSON: NaN is not allowed"),
    (b'{"type":"click","time":1764237600,"cost":"Infinity"}', "cost", "must be finite"),
    (b'{"type":"click","time":1764237600,"cost":0.0000001}', "cost", "more than 6 decimal places"),
    (b'{"type":"click","time":1764237600,"cost":1e30}', "cost", "out of range"),
    (b'{"type":"click","time":1764237600,"cost":true}', "cost", "money must be a number, got a boolean"),
    (b'{"type":"click","time":1764237600,"campaign_id":99999999999999999999}', "campaign_id", "overflows a long"),
    (b'{"type":"click","time":1764237600,"campaign_id":"abc"}', "campaign_id", "expected long"),
    (b'{"type":"click","time":1764237600,"id":""}', "id", "non-empty string"),
    (b'{"type":"click","time":1764237600,"id":"' + b"x" * 65 + b'"}', "id", "at most 64"),
])
def test_rejections_name_field_and_reason(line: bytes, field: str | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse(line)
    assert exc.value.field == field
    assert reason in str(exc.value)


def test_line_size_limit() -> None:
    with pytest.raises(InvalidEvent, match="over the limit"):
        parse(b'{"type":"click","time":1,"x":"' + b"a" * (1 << 20) + b'"}')


@pytest.mark.parametrize("value,ms", [(1_764_237_600, 1_764_237_600_000), (1_764_237_600_123, 1_764_237_600_123),
                                      ("2026-11-27T10:00:00Z", 1_795_773_600_000),
                                      ("2026-11-27T10:00:00.250+00:00", 1_795_773_600_250)])
def test_time_forms(value: object, ms: int) -> None:
    assert parse_time(value) == ms


def test_money_is_exact() -> None:
    assert to_micros("0.1", "cost") + to_micros("0.2", "cost") == to_micros("0.3", "cost") == 300_000
    assert to_micros(5, "cost") == 5_000_000
    assert format_micros(1_500_001) == "1.500001"


@pytest.mark.parametrize("text", ["0", "7", "007", "0.1", "0.000001", "0.004762", "123456789012.999999",
                                  "999999999999", "9999999999999", "9223372036854.775807", "9223372036854.775808",
                                  "1.", ".5", "1.0000001", "1.1000000", " 2.5", "1e3", "-1", "+1", "١٢", "1_0", ""])
def test_money_strings_read_without_decimal_give_what_decimal_gives(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The int() fast path for plain decimal strings and the exact Decimal path agree, value or error."""
    import re

    from eventd.event import money

    def outcome() -> object:
        try:
            return to_micros(text, "cost")
        except InvalidEvent as exc:
            return exc.reason

    fast = outcome()
    monkeypatch.setattr(money, "_PLAIN", re.compile(r"(?!)"))    # matches nothing: the Decimal path only
    assert fast == outcome()


def test_decoder_rejects_garbage_and_unknown_fingerprints() -> None:
    with pytest.raises(DecodeError, match="missing C3 01"):
        Decoder(STORE).decode(b"{json}")
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        Decoder(STORE).decode(MAGIC + b"\x00" * 8 + b"\x00")
    ev = parse({"type": "click", "time": 1_764_237_600})
    with pytest.raises(DecodeError, match="corrupt Avro body|trailing bytes"):
        Decoder(STORE).decode(encode(ev.schema, ev.record)[:-3])


def test_schema_evolution_reads_old_and_new_versions(tmp_path: Path) -> None:
    for f in (REPO / "conf" / "schemas").iterdir():
        (tmp_path / f.name).write_text(f.read_text())
    v2 = json.loads((tmp_path / "click.v1.avsc").read_text())
    v2["fields"].insert(-1, {"name": "referrer", "type": ["null", "string"], "default": None})
    (tmp_path / "click.v2.avsc").write_text(json.dumps(v2))
    old_store, new_store = STORE, SchemaStore.load(str(tmp_path))
    old = parse({"type": "click", "time": 1, "campaign_id": 1})
    new_parser = EventParser(new_store, CFG.events, "events.", 6, "web1")
    new = new_parser.parse(b'{"type":"click","time":1,"referrer":"a.com"}', "tcp", 1, lambda: "n")
    assert new.record["schema_version"] == 2 and new.record["referrer"] == "a.com"
    dec = Decoder(new_store)
    assert dec.decode(encode(old.schema, old.record))[0].version == 1
    assert dec.decode(encode(new.schema, new.record))[1]["referrer"] == "a.com"
    with pytest.raises(DecodeError):   # a consumer that does not have v2 yet says so
        Decoder(old_store).decode(encode(new.schema, new.record))
    assert fastavro  # fastavro parses every shipped schema (SchemaStore.load did)
