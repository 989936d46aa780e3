"""A window's sums: what one transaction adds to each campaign, campaign-day and publisher.

Integers only (micro-units). The advertiser accounts' sums are not kept here: the campaign's
owner is in MariaDB, so they are summed there, joined through the campaigns table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Iterable

from eventd.roles.balance_aggregator.events import Charge


@dataclass
class Window:
    spend: dict[int, int] = field(default_factory=dict)                    # campaign → cost
    day_spend: dict[tuple[int, date], int] = field(default_factory=dict)   # (campaign, day) → cost
    revenue: dict[int, int] = field(default_factory=dict)                  # publisher → revenue
    events: int = 0
    cost_total: int = 0
    revenue_total: int = 0

    @classmethod
    def of(cls, charges: Iterable[Charge]) -> "Window":
        """The sums of ``charges``. Every charge with a cost has a campaign and a day, every one
        with revenue a publisher (``ChargeReader`` guarantees it)."""
        w = cls()
        spend, day_spend, revenue = w.spend, w.day_spend, w.revenue
        for c in charges:
            w.events += 1
            cost = c.cost
            if cost:
                campaign = c.campaign
                assert campaign is not None and c.day is not None
                spend[campaign] = spend.get(campaign, 0) + cost
                key = (campaign, c.day)
                day_spend[key] = day_spend.get(key, 0) + cost
                w.cost_total += cost
            if c.revenue:
                assert c.publisher is not None
                revenue[c.publisher] = revenue.get(c.publisher, 0) + c.revenue
                w.revenue_total += c.revenue
        return w

    def __bool__(self) -> bool:
        return bool(self.spend or self.revenue)
