"""From a Kafka message to a :class:`Charge`: the event's id, who pays, who earns, how much.

Cost is charged to the campaign (its spent, its spend of the event's day) and to the
campaign's advertiser account (the owner recorded in the campaigns table, not the event's
``advertiser_id``, which is only used to create an unknown campaign when so configured).
Revenue is credited to the publisher account. Money is integer micro-units throughout.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from eventd.errors import InvalidEvent
from eventd.event.binary import MAGIC, compile_projection
from eventd.event.codec import HEADER_SIZE, Decoder, decode_body
from eventd.event.schemas import SchemaStore
from eventd.event.money import MAX_MICROS
from eventd.kafka.batch import Message

COST, REVENUE = "cost", "revenue"
CAMPAIGN, ADVERTISER, PUBLISHER = "campaign_id", "advertiser_id", "publisher_id"
CHARGE_FIELDS = ("id", "time", COST, REVENUE, CAMPAIGN, ADVERTISER, PUBLISHER)
_new = tuple.__new__


class Charge(NamedTuple):
    """One event as the balances see it. ``day`` is set when there is a cost."""

    topic: str
    partition: int
    offset: int
    event_id: str
    campaign: int | None
    advertiser: int | None
    publisher: int | None
    cost: int
    revenue: int
    day: date | None
    key: bytes | None
    value: bytes


class DayOf:
    """Epoch milliseconds → the calendar day in a time zone, caching the current day's bounds
    (events of one window nearly always fall on one day)."""

    def __init__(self, zone: str) -> None:
        self.tz = ZoneInfo(zone)
        self._lo, self._hi, self._day = 0, 0, date.min

    def __call__(self, ms: int) -> date:
        if self._lo <= ms < self._hi:
            return self._day
        day = datetime.fromtimestamp(ms // 1000, self.tz).date()
        lo, hi = self._bound(day), self._bound(day + timedelta(days=1))
        # Where midnight does not exist (a DST jump at 00:00) the bounds may be off: don't cache.
        if lo <= ms < hi and self.local_day(lo) == day and self.local_day(hi - 1) == day:
            self._lo, self._hi, self._day = lo, hi, day
        return day

    def local_day(self, ms: int) -> date:
        return datetime.fromtimestamp(ms // 1000, self.tz).date()

    def _bound(self, day: date) -> int:
        return int(datetime.combine(day, time(0), self.tz).timestamp()) * 1000

    def today(self) -> date:
        return datetime.now(self.tz).date()


class ChargeReader:
    """Decodes balance events with any schema version in the store. Deterministic: the same
    message always gives the same charge or the same error."""

    def __init__(self, store: SchemaStore, day_of: DayOf) -> None:
        self._decoder = Decoder(store)
        self._day_of = day_of
        # Per writer schema fingerprint, a reader of only the values a charge needs, in
        # CHARGE_FIELDS order: the rest of a record (strings, most of it) is stepped over.
        self._readers = {fp: (entry, compile_projection(entry.raw, CHARGE_FIELDS))
                         for fp, entry in store.by_fingerprint.items()}

    def read(self, msg: Message) -> Charge:
        """The charge of ``msg``; raises DecodeError (unreadable) or InvalidEvent (money without
        the campaign or account it belongs to, or out of range)."""
        value = msg.value
        found = self._readers.get(value[2:HEADER_SIZE]) if value[:2] == MAGIC else None
        if found is None:
            self._decoder.split(value)       # raises the DecodeError that says why
            raise AssertionError("a schema without a reader")   # the readers cover the store
        entry, read = found
        event_id, ms, cost, revenue, campaign, advertiser, publisher = decode_body(entry, value, HEADER_SIZE, read)
        cost, revenue = cost or 0, revenue or 0
        if not (0 <= cost <= MAX_MICROS and 0 <= revenue <= MAX_MICROS):
            field, amount = (COST, cost) if not 0 <= cost <= MAX_MICROS else (REVENUE, revenue)
            raise InvalidEvent(f"money must be 0..{MAX_MICROS} micro-units, got {amount}", field)
        if cost and campaign is None:
            raise InvalidEvent(f"cost {cost} micro-units without a campaign", CAMPAIGN)
        if revenue and publisher is None:
            raise InvalidEvent(f"revenue {revenue} micro-units without a publisher account", PUBLISHER)
        # tuple.__new__: one C call, where the NamedTuple's own __new__ is a Python function.
        return _new(Charge, (msg.topic, msg.partition, msg.offset, event_id, campaign, advertiser, publisher, cost,
                             revenue, self._day_of(ms) if cost else None, msg.key, value))
