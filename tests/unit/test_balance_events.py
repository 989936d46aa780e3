"""From a Kafka message to a charge: decoding, what is refused and why, and the day of an
event in the configured time zone."""

from __future__ import annotations

import random
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from eventd.errors import DecodeError, InvalidEvent
from eventd.event.codec import Decoder, encode
from eventd.event.schemas import SchemaStore
from eventd.kafka.batch import Message
from eventd.roles.balance_aggregator.events import Charge, ChargeReader, DayOf

STORE = SchemaStore.load(str(Path(__file__).resolve().parents[2] / "conf" / "schemas"))
T = 1_780_000_000_000     # 2026-05-28T20:26:40Z


def message(etype: str = "impression", offset: int = 7, **payload: object) -> Message:
    record = {"id": "ev-1", "type": etype, "time": T, "received": T, "host": "h", "input": "http",
              "schema_version": 1, "extra": {}, **payload}
    return Message("t", 2, offset, b"k", encode(STORE.writer(etype), record), 0)


def reader(zone: str = "UTC") -> ChargeReader:
    return ChargeReader(STORE, DayOf(zone))


def test_an_impression_becomes_a_charge_in_integer_micro_units() -> None:
    c = reader().read(message(campaign_id=5, advertiser_id=6, publisher_id=7, cost=1_500_001, revenue=3))
    assert (c.topic, c.partition, c.offset, c.event_id) == ("t", 2, 7, "ev-1")
    assert (c.campaign, c.advertiser, c.publisher, c.cost, c.revenue) == (5, 6, 7, 1_500_001, 3)
    assert c.day == date(2026, 5, 28) and c.key == b"k"
    assert isinstance(c.cost, int) and isinstance(c.revenue, int)


def test_an_event_without_money_needs_no_campaign_or_account() -> None:
    c = reader().read(message("click"))
    assert (c.cost, c.revenue, c.campaign, c.day) == (0, 0, None, None)


def test_cost_without_a_campaign_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidEvent, match="campaign_id: cost 10 micro-units without a campaign"):
        reader().read(message(publisher_id=1, cost=10))


def test_revenue_without_a_publisher_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidEvent, match="publisher_id: revenue 4 micro-units without a publisher"):
        reader().read(message("conversion", campaign_id=1, revenue=4))


def test_negative_money_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="cost: money must be"):
        reader().read(message(campaign_id=1, cost=-1))
    with pytest.raises(InvalidEvent, match=r"revenue: money must be .*, got -5"):
        reader().read(message("conversion", campaign_id=1, publisher_id=2, cost=3, revenue=-5))
    with pytest.raises(InvalidEvent, match=r"cost: money must be .*, got -3"):    # the first field refused
        reader().read(message("conversion", campaign_id=1, publisher_id=2, cost=-3, revenue=-5))


def test_corrupt_and_foreign_messages_are_decode_errors() -> None:
    good = message(campaign_id=1, cost=1)
    with pytest.raises(DecodeError, match="trailing bytes"):
        reader().read(Message("t", 0, 0, None, good.value + b"\0", 0))
    with pytest.raises(DecodeError, match="single-object"):
        reader().read(Message("t", 0, 0, None, b'{"json": true}', 0))


def test_charges_read_from_some_fields_equal_those_of_the_whole_record() -> None:
    """The reader decodes only the fields a charge needs; random events of every type give the
    charge the whole decoded record gives, and a truncated one is still refused."""
    rng = random.Random(11)
    texts = (None, "", "DE", "Mozilla/5.0 " * rng.randint(1, 30), "Grüße 日本語")
    projected, decoder, day_of = reader(), Decoder(STORE), DayOf("UTC")

    def whole(msg: Message) -> Charge | str:
        """The charge by the rules, from the whole decoded record (or the refusal)."""
        r = decoder.decode(msg.value)[1]
        cost, revenue = r.get("cost") or 0, r.get("revenue") or 0
        if cost and r.get("campaign_id") is None:
            return "InvalidEvent: campaign_id"
        if revenue and r.get("publisher_id") is None:
            return "InvalidEvent: publisher_id"
        return Charge(msg.topic, msg.partition, msg.offset, r["id"], r.get("campaign_id"), r.get("advertiser_id"),
                      r.get("publisher_id"), cost, revenue, day_of(r["time"]) if cost else None, msg.key, msg.value)

    def projected_or_refusal(msg: Message) -> Charge | str:
        try:
            return projected.read(msg)
        except InvalidEvent as exc:
            return f"InvalidEvent: {exc.field}"
    for i in range(2000):
        etype = rng.choice(("impression", "click", "conversion", "bid"))
        ids = {k: rng.choice((None, rng.randint(1, 2**40))) for k in ("campaign_id", "advertiser_id", "publisher_id")}
        money = {"cost": rng.choice((0, rng.randint(1, 10**12))) if ids["campaign_id"] or i % 7 == 0 else 0,
                 "revenue": rng.choice((0, rng.randint(1, 10**9))) if ids["publisher_id"] or i % 7 == 1 else 0}
        texts_of = {k: rng.choice(texts) for k in ("country", "device", "ip", "user_agent")}
        payload = {k: v for k, v in {**ids, **money, **texts_of}.items() if k in STORE.writer(etype).input_names}
        msg = message(etype, offset=i, **payload)
        record_extra = {f"k{j}": rng.choice(texts) or "" for j in range(rng.choice((0, 0, 3)))}
        if record_extra:    # the same event with an extra map, as the collector keeps unknown fields
            msg = Message(msg.topic, 2, i, b"k", encode(STORE.writer(etype), {
                "id": f"ev-{i}", "type": etype, "time": T + i, "received": T, "host": "h", "input": "http",
                "schema_version": 1, "extra": record_extra, **payload}), 0)
        assert projected_or_refusal(msg) == whole(msg)
    with pytest.raises(DecodeError, match="corrupt Avro body"):
        projected.read(Message(msg.topic, 0, 0, None, msg.value[:-3], 0))


def test_day_boundaries_follow_the_configured_zone() -> None:
    utc, berlin = DayOf("UTC"), DayOf("Europe/Berlin")
    late = int(datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc).timestamp() * 1000)
    assert utc(late) == date(2026, 3, 1) and berlin(late) == date(2026, 3, 2)
    assert utc(late - 1) == date(2026, 3, 1)        # cached bounds give the same answers


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Sao_Paulo", "Asia/Kolkata", "Pacific/Apia"])
def test_cached_days_equal_direct_computation_across_dst_changes(zone: str) -> None:
    day_of, tz, rng = DayOf(zone), ZoneInfo(zone), random.Random(zone)
    ms = int(datetime(2011, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    for _ in range(3000):
        ms += rng.choice((1, 999, 3_600_000, 86_399_999, 7 * 86_400_000))
        assert day_of(ms) == datetime.fromtimestamp(ms // 1000, tz).date(), ms
