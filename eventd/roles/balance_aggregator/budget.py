"""Budget stops, decided inside the window's transaction right after the money is applied.

A campaign is stopped when its spent reaches its total budget or its spend of *today* (the
current day in ``day_boundary`` when the window is applied) reaches its daily budget. The
stop is guarded by ``status = active``, so it happens once however many aggregators race
for it; only campaigns the window charged are examined. The money already charged beyond the
budget is kept (events were served) and recorded as ``overspend``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventd.event.money import format_micros
from eventd.roles.balance_aggregator.ledger import SPEND
from eventd.roles.balance_aggregator.outbox import OutboxRow
from eventd.roles.balance_aggregator.schema import REASON_DAILY, REASON_TOTAL, Sql

CANDIDATES = f"""
SELECT c.{{campaigns.id}}, c.{{campaigns.advertiser}}, c.{{campaigns.spent}}, c.{{campaigns.total_budget}},
       c.{{campaigns.daily_budget}}, d.{{campaign_days.spent}}
FROM {SPEND} s JOIN {{campaigns}} c ON c.{{campaigns.id}} = s.w_campaign
LEFT JOIN {{campaign_days}} d ON d.{{campaign_days.campaign}} = c.{{campaigns.id}} AND d.{{campaign_days.day}} = %s
WHERE c.{{campaigns.status}} = {{status_active}}
  AND ((c.{{campaigns.total_budget}} IS NOT NULL AND c.{{campaigns.spent}} >= c.{{campaigns.total_budget}})
    OR (c.{{campaigns.daily_budget}} IS NOT NULL AND d.{{campaign_days.spent}} >= c.{{campaigns.daily_budget}}))
ORDER BY c.{{campaigns.id}}"""

STOP = """UPDATE {campaigns} SET {campaigns.status} = {status_stopped}, {campaigns.status_reason} = %s,
  {campaigns.status_changed} = %s, {campaigns.overspend} = {campaigns.overspend} + %s * 0.000001
WHERE {campaigns.id} = %s AND {campaigns.status} = {status_active}"""


def micros(value: Decimal | None) -> int | None:
    """A DECIMAL(20,6) read from MariaDB → integer micro-units, exactly."""
    return None if value is None else int(value.scaleb(6))


@dataclass(frozen=True)
class Stop:
    """A campaign stopped by this window. Money in micro-units."""

    campaign: int
    advertiser: int
    reason: str
    spent: int
    total_budget: int | None
    daily_budget: int | None
    day: date
    day_spent: int
    overspend: int
    at: datetime          # UTC, naive (as stored in DATETIME(6))

    def control_event(self, topic: str, host: str) -> OutboxRow:
        """The ``campaign_stopped`` message for ad servers: JSON, money as decimal text."""
        event_id = uuid.uuid4().hex
        body = {"type": "campaign_stopped", "id": event_id, "time": int(time.time() * 1000), "host": host,
                "campaign_id": self.campaign, "advertiser_id": self.advertiser, "reason": self.reason,
                "spent": format_micros(self.spent), "total_budget": _text(self.total_budget),
                "daily_budget": _text(self.daily_budget), "day": self.day.isoformat(),
                "day_spent": format_micros(self.day_spent), "overspend": format_micros(self.overspend),
                "stopped_at": self.at.isoformat() + "Z"}
        return OutboxRow(event_id, topic, str(self.campaign).encode(),
                         json.dumps(body, separators=(",", ":")).encode(), (("eventd.type", "campaign_stopped"),))


def _text(value: int | None) -> str | None:
    return None if value is None else format_micros(value)


class Budgets:
    def __init__(self, sql: Sql) -> None:
        self._candidates, self._stop = sql(CANDIDATES), sql(STOP)

    def stop_reached(self, cur: Any, today: date, now: datetime) -> list[Stop]:
        """Stop every charged, active campaign that reached a budget; the stops made."""
        cur.execute(self._candidates, (today,))
        stops = []
        for row in cur.fetchall():
            stop = self._decide(row, today, now)
            if cur.execute(self._stop, (stop.reason, now, stop.overspend, stop.campaign)) == 1:
                stops.append(stop)
        return stops

    @staticmethod
    def _decide(row: tuple[Any, ...], today: date, now: datetime) -> Stop:
        campaign, advertiser = row[0], row[1]
        spent, total, daily, day_spent = micros(row[2]), micros(row[3]), micros(row[4]), micros(row[5]) or 0
        assert spent is not None
        over_total = spent - total if total is not None and spent >= total else None
        over_daily = day_spent - daily if daily is not None and day_spent >= daily else None
        reason = REASON_TOTAL if over_total is not None else REASON_DAILY
        overspend = max(v for v in (over_total, over_daily) if v is not None)
        return Stop(campaign, advertiser, reason, spent, total, daily, today, day_spent, overspend, now)
