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

    def add(self, c: Charge) -> None:
        self.events += 1
        if c.cost:
            assert c.campaign is not None and c.day is not None   # ChargeReader guarantees both
            self.spend[c.campaign] = self.spend.get(c.campaign, 0) + c.cost
            key = (c.campaign, c.day)
            self.day_spend[key] = self.day_spend.get(key, 0) + c.cost
            self.cost_total += c.cost
        if c.revenue:
            assert c.publisher is not None
            self.revenue[c.publisher] = self.revenue.get(c.publisher, 0) + c.revenue
            self.revenue_total += c.revenue

    @classmethod
    def of(cls, charges: Iterable[Charge]) -> "Window":
        window = cls()
        for c in charges:
            window.add(c)
        return window

    def __bool__(self) -> bool:
        return bool(self.spend or self.revenue)
