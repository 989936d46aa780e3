"""Event record → events row: envelope, configured columns, extras kept, Kafka position; a
value that does not fit its column is an InvalidEvent naming field, column and range."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from eventd.config import load_config
from eventd.config.clickhouse import DEFAULT_COLUMNS, ColumnMapping
from eventd.errors import CannotStart, DecodeError, InvalidEvent
from eventd.event.codec import Decoder, encode
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore
from eventd.kafka.batch import Message
from eventd.roles.clickhouse_loader.mapping import RowMapper

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(str(REPO / "conf" / "schemas"))
PARSER = EventParser(STORE, CFG.events, "events.", 6, "host1")
MSG = Message("events.click", 2, 41, b"7", b"", 0)


def row(mapper: RowMapper, **fields: Any) -> dict[str, Any]:
    """The row for a JSON event, as column → value, through parse, encode and decode."""
    event = PARSER.parse(json.dumps(fields).encode(), "http", 1_700_000_000_123, lambda: "gen-id")
    entry, record = Decoder(STORE).decode(encode(event.schema, event.record))
    values = mapper.row(entry, record, MSG)
    names = [n for n, _ in mapper.column_types()]
    assert len(values) == len(names)
    return dict(zip(names, values))


def test_known_type_fills_envelope_columns_extras_and_position() -> None:
    mapper = RowMapper.build(DEFAULT_COLUMNS, STORE, CFG.events)
    r = row(mapper, type="click", id="c1", time=1_710_064_801_250, campaign_id=7, site_id=3, country="DE",
            cost="0.25", revenue="1", browser="firefox", retries=3)
    assert (r["id"], r["type"], r["time"], r["time_ms"], r["received_ms"]) == \
        ("c1", "click", 1_710_064_801, 1_710_064_801_250, 1_700_000_000_123)
    assert (r["host"], r["input"], r["schema_version"]) == ("host1", "http", 1)
    assert (r["campaign_id"], r["site_id"], r["zone_id"], r["country"], r["device"]) == (7, 3, 0, "DE", "")
    assert (r["cost_micros"], r["revenue_micros"], r["bid_micros"], r["value_micros"]) == (250_000, 1_000_000, 0, 0)
    assert (r["extra_keys"], r["extra_values"]) == (["browser", "retries"], ["firefox", "3"])
    assert (r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) == ("events.click", 2, 41)


def test_type_without_schema_is_mapped_from_its_extras() -> None:
    mapper = RowMapper.build(DEFAULT_COLUMNS, STORE, CFG.events)
    r = row(mapper, type="video_view", id="v1", time=1_710_064_800, campaign_id=9, cost="0.5", value="2.5",
            goal=42, won=True)
    assert (r["type"], r["campaign_id"], r["cost_micros"]) == ("video_view", 9, 500_000)
    assert r["value_micros"] == 2_500_000       # decimal text in units from the extra map
    assert (r["goal"], r["won"]) == ("42", 1)
    assert r["extra_keys"] == []


def test_unmapped_payload_fields_go_to_extras_money_in_units() -> None:
    columns = (ColumnMapping("campaign_id", "campaign_id", "UInt64", False),)
    mapper = RowMapper.build(columns, STORE, CFG.events)
    r = row(mapper, type="conversion", id="x", time=1_710_064_800, campaign_id=1, cost="1.5", goal="signup")
    extras = dict(zip(r["extra_keys"], r["extra_values"]))
    assert extras == {"cost": "1.500000", "revenue": "0.000000", "value": "0.000000", "goal": "signup"}
    assert r["extra_keys"] == sorted(r["extra_keys"])


@pytest.mark.parametrize("fields,message", [
    ({"site_id": -5}, "site_id: -5 is out of range of column site_id UInt64"),
    ({"zone_id": 70000}, "zone_id: 70000 is out of range of column zone_id UInt16 (0..65535)"),
    ({"time": 5_000_000_000_000}, "time: 5000000000000 ms is outside ClickHouse's DateTime range"),
    ({"type": "video_view", "slot": "abc"}, "slot: 'abc' is not an integer (column slot UInt32)"),
    ({"type": "video_view", "weight": "heavy"}, "weight: 'heavy' is not a number (column weight Float64)"),
])
def test_a_value_that_does_not_fit_its_column_is_invalid(fields: dict[str, Any], message: str) -> None:
    columns = DEFAULT_COLUMNS + (ColumnMapping("zone16", "zone_id", "UInt16", False),
                                 ColumnMapping("slot", "slot", "UInt32", False),
                                 ColumnMapping("weight", "weight", "Float64", False))
    mapper = RowMapper.build(columns, STORE, CFG.events)
    with pytest.raises(InvalidEvent) as exc:
        row(mapper, **({"type": "impression", "id": "i", "time": 1_710_064_800, "campaign_id": 1} | fields))
    assert str(exc.value).replace("zone16", "zone_id").startswith(message)


def test_rows_depend_only_on_the_message() -> None:
    mapper = RowMapper.build(DEFAULT_COLUMNS, STORE, CFG.events)
    event = dict(type="bid", id="b1", time=1_710_064_800, campaign_id=2, bid="0.000001", won=True, x="1")
    assert row(mapper, **event) == row(RowMapper.build(DEFAULT_COLUMNS, STORE, CFG.events), **event)


def test_money_field_in_a_float_column_cannot_start() -> None:
    columns = (ColumnMapping("cost", "cost", "Float64", False),)
    with pytest.raises(CannotStart, match="money is integer micro-units"):
        RowMapper.build(columns, STORE, CFG.events)


def random_events(rng: Any, picks: dict[str, tuple[Any, ...]], share: float, time: int) -> Iterator[tuple[int, Any]]:
    """(i, event) for 3,000 random JSON events of every type, each field of ``picks`` present with
    probability ``share``; those refused at intake (they never reach a loader) are left out."""
    for i in range(3000):
        fields = {k: rng.choice(v) for k, v in picks.items() if rng.random() < share}
        line = {"type": rng.choice(("impression", "click", "conversion", "bid", "video_view")), "id": f"e{i}",
                "time": time, **fields}
        try:
            yield i, PARSER.parse(json.dumps(line).encode(), "http", 1, lambda: "g")
        except InvalidEvent:
            continue


def test_the_generated_values_equal_the_steps_applied_one_by_one() -> None:
    """Each plan's generated function inlines the common conversions; for random events of every
    type it gives what applying each step's converter to its source gives, errors included."""
    import random
    columns = DEFAULT_COLUMNS + (ColumnMapping("zone16", "zone_id", "UInt16", False),
                                 ColumnMapping("slot", "slot", "UInt32", False),
                                 ColumnMapping("weight", "weight", "Float64", False))
    mapper = RowMapper.build(columns, STORE, CFG.events)
    rng = random.Random(5)
    picks = {"campaign_id": (0, 1, 2**40, "12"), "site_id": (3, 2**63 - 1), "zone_id": (0, 65535, 65536),
             "country": ("", "DE", "Grüße"), "device": ("mobile",), "goal": ("signup", 42), "won": (True, False),
             "slot": (3, "12", "x", -1), "weight": (1.5, "2", "heavy")}
    compared = errors = 0
    for _, event in random_events(rng, picks, 0.6, 1_710_064_800):
        entry, record = Decoder(STORE).decode(encode(event.schema, event.record))
        plan = mapper._plans.get(entry.fingerprint) or mapper._plan(entry)
        extra = record.get("extra") or {}
        try:
            expected = tuple(convert((extra if in_extra else record).get(field)) for in_extra, field, convert
                             in plan.steps)
        except InvalidEvent as exc:
            with pytest.raises(InvalidEvent, match=exc.reason[:40].replace("(", r"\(").replace(")", r"\)")):
                plan.values(record, extra)
            errors += 1
            continue
        assert plan.values(record, extra) == expected
        compared += 1
    assert compared > 500 and errors > 100     # both paths exercised (fixed seed)


def outcome(produce: Any) -> Any:
    try:
        return produce()
    except (InvalidEvent, DecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_the_row_reader_gives_the_row_of_the_decoded_record() -> None:
    """``RowMapper.reader`` decodes and maps in one generated function; for random events of
    every type (extras, money, values out of their columns' range, damaged bodies) it must give
    what decoding the message and then ``row`` gives, or the same error."""
    import random
    columns = DEFAULT_COLUMNS + (ColumnMapping("zone16", "zone_id", "UInt16", False),
                                 ColumnMapping("slot", "slot", "UInt32", False),
                                 ColumnMapping("goal_cost", "goal_cost", "Int64", True),
                                 ColumnMapping("weight", "weight", "Float64", False))
    mapper, decoder = RowMapper.build(columns, STORE, CFG.events), Decoder(STORE)
    rng = random.Random(8)
    picks = {"campaign_id": (0, 1, 2**40), "site_id": (3, 2**63 - 1), "zone_id": (0, 65535, 65536),
             "country": ("", "DE", "Grüße"), "goal": ("signup", 42), "won": (True, False), "slot": (3, "12", "x"),
             "weight": (1.5, "heavy"), "cost": ("0.25", "3", 0), "revenue": ("1.000001",), "bid": ("0.1",),
             "goal_cost": ("2.5", "x"), "browser": ("firefox", "日本語"), "time": (1_710_064_800, 5_000_000_000_000)}
    seen = {"row": 0, "InvalidEvent": 0, "DecodeError": 0}
    for i, event in random_events(rng, picks, 0.5, 1_710_064_801_250):
        value = event.value
        if rng.random() < 0.2:      # damaged: cut, or a byte changed, after the header
            cut = rng.randrange(11, len(value) + 1)
            value = bytearray(value[:cut] if rng.random() < 0.5 else value)
            value[rng.randrange(10, len(value))] = rng.choice((0x80, 0xFF, 0x02, rng.randrange(256)))
            value = bytes(value)
        msg = Message("events.x", 3, i, None, value, 0)

        def by_record() -> Any:
            entry, record = decoder.decode(value)
            return mapper.row(entry, record, msg)
        expected = outcome(by_record)
        got = outcome(lambda: mapper.reader(decoder.split(value)[0])(value, "events.x", 3, i))
        assert got == expected, event.record
        seen["row" if isinstance(expected, tuple) else expected.split(":")[0]] += 1
    assert min(seen.values()) > 100, seen       # every outcome exercised (fixed seed)
