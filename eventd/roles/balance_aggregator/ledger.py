"""The money statements of one window, set-based: the window's sums go into temporary tables
and a handful of joined statements apply them, whatever the number of campaigns.

Every update is relative (``spent = spent + Δ``), so aggregators in several data centres
writing to the same database compose. Micro-units travel as integers and become DECIMAL by
multiplying with the exact literal ``0.000001`` (never a division, whose scale MariaDB would
cut to 4 decimal places, and never a float).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventd.roles.balance_aggregator.events import Charge
from eventd.roles.balance_aggregator.schema import Sql
from eventd.roles.balance_aggregator.window import Window

SPEND, DAYS, REVENUE = "eventd_w_spend", "eventd_w_day", "eventd_w_revenue"
# Temporary tables live on the connection; MEMORY: they hold one window and are cleared per window.
TEMP_TABLES = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {SPEND} (w_campaign BIGINT NOT NULL PRIMARY KEY, "
    f"w_cost BIGINT NOT NULL) ENGINE=MEMORY",
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {DAYS} (w_campaign BIGINT NOT NULL, w_day DATE NOT NULL, "
    f"w_cost BIGINT NOT NULL, PRIMARY KEY (w_campaign, w_day)) ENGINE=MEMORY",
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {REVENUE} (w_account BIGINT NOT NULL PRIMARY KEY, "
    f"w_revenue BIGINT NOT NULL) ENGINE=MEMORY",
)

# Campaigns and accounts the window names that do not exist, in one statement.
UNKNOWN = f"""
SELECT 'campaign', s.w_campaign, NULL FROM {SPEND} s
  LEFT JOIN {{campaigns}} c ON c.{{campaigns.id}} = s.w_campaign WHERE c.{{campaigns.id}} IS NULL
UNION ALL
SELECT 'advertiser', s.w_campaign, c.{{campaigns.advertiser}} FROM {SPEND} s
  JOIN {{campaigns}} c ON c.{{campaigns.id}} = s.w_campaign
  LEFT JOIN {{accounts}} a ON a.{{accounts.id}} = c.{{campaigns.advertiser}} WHERE a.{{accounts.id}} IS NULL
UNION ALL
SELECT 'publisher', r.w_account, NULL FROM {REVENUE} r
  LEFT JOIN {{accounts}} a ON a.{{accounts.id}} = r.w_account WHERE a.{{accounts.id}} IS NULL"""

APPLY = (
    # Per-day spend (the day of the event's time in balance_aggregator.day_boundary).
    f"""INSERT INTO {{campaign_days}} ({{campaign_days.campaign}}, {{campaign_days.day}}, {{campaign_days.spent}})
SELECT w_campaign, w_day, w_cost * 0.000001 FROM {DAYS}
ON DUPLICATE KEY UPDATE {{campaign_days}}.{{campaign_days.spent}} =
  {{campaign_days}}.{{campaign_days.spent}} + VALUES({{campaign_days.spent}})""",
    # Campaigns: spent, and what is charged after a budget stop counts as overspend.
    f"""UPDATE {{campaigns}} c JOIN {SPEND} s ON c.{{campaigns.id}} = s.w_campaign
SET c.{{campaigns.spent}} = c.{{campaigns.spent}} + s.w_cost * 0.000001,
    c.{{campaigns.overspend}} = c.{{campaigns.overspend}} + IF(c.{{campaigns.status}} = {{status_stopped}}
      AND c.{{campaigns.status_reason}} IN ({{reason_total}}, {{reason_daily}}), s.w_cost * 0.000001, 0)""",
    # Advertisers pay the cost of their campaigns (the owner recorded in the campaigns table).
    f"""UPDATE {{accounts}} a JOIN (SELECT c.{{campaigns.advertiser}} AS w_account, SUM(s.w_cost) AS w_cost
  FROM {SPEND} s JOIN {{campaigns}} c ON c.{{campaigns.id}} = s.w_campaign GROUP BY c.{{campaigns.advertiser}}) x
  ON a.{{accounts.id}} = x.w_account
SET a.{{accounts.balance}} = a.{{accounts.balance}} - x.w_cost * 0.000001""",
    # Publishers earn the revenue.
    f"""UPDATE {{accounts}} a JOIN {REVENUE} r ON a.{{accounts.id}} = r.w_account
SET a.{{accounts.balance}} = a.{{accounts.balance}} + r.w_revenue * 0.000001""",
)

CREATE_CAMPAIGN = ("INSERT INTO {campaigns} ({campaigns.id}, {campaigns.advertiser}) VALUES (%s, %s)")
CREATE_ACCOUNT = ("INSERT INTO {accounts} ({accounts.id}) VALUES (%s) "
                  "ON DUPLICATE KEY UPDATE {accounts.id} = {accounts.id}")


@dataclass
class Unknown:
    """What the window names that the database lacks."""

    campaigns: set[int] = field(default_factory=set)
    advertisers: dict[int, int] = field(default_factory=dict)     # campaign → its missing account
    publishers: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.campaigns or self.advertisers or self.publishers)


@dataclass
class LedgerResult:
    window: Window
    rejected: list[tuple[Charge, str]] = field(default_factory=list)
    created_campaigns: list[int] = field(default_factory=list)
    created_accounts: list[int] = field(default_factory=list)


class Ledger:
    """Applies charges inside the caller's transaction. Unknown campaigns and accounts are
    created (``create``) or their events are returned as rejected (they never block the window)."""

    def __init__(self, sql: Sql, create: bool) -> None:
        self.create = create
        self._unknown = sql(UNKNOWN)
        self._apply = [sql(s) for s in APPLY]
        self._create_campaign, self._create_account = sql(CREATE_CAMPAIGN), sql(CREATE_ACCOUNT)

    def apply(self, cur: Any, charges: list[Charge]) -> LedgerResult:
        result = LedgerResult(Window.of(charges))
        if not result.window:        # only duplicates or events without money: just the offsets move
            return result
        self._load(cur, result.window)
        unknown = self._find_unknown(cur)
        if unknown:
            accepted = self._resolve(cur, unknown, charges, result)
            if result.rejected:
                result.window = Window.of(accepted)
                self._load(cur, result.window)
        if result.window:
            for statement in self._apply:
                cur.execute(statement)
        return result

    def _load(self, cur: Any, w: Window) -> None:
        for table in (SPEND, DAYS, REVENUE):
            cur.execute(f"DELETE FROM {table}")
        if w.spend:
            cur.executemany(f"INSERT INTO {SPEND} (w_campaign, w_cost) VALUES (%s, %s)", sorted(w.spend.items()))
            cur.executemany(f"INSERT INTO {DAYS} (w_campaign, w_day, w_cost) VALUES (%s, %s, %s)",
                            sorted((c, d, v) for (c, d), v in w.day_spend.items()))
        if w.revenue:
            cur.executemany(f"INSERT INTO {REVENUE} (w_account, w_revenue) VALUES (%s, %s)",
                            sorted(w.revenue.items()))

    def _find_unknown(self, cur: Any) -> Unknown:
        cur.execute(self._unknown)
        unknown = Unknown()
        for kind, ident, account in cur.fetchall():
            if kind == "campaign":
                unknown.campaigns.add(ident)
            elif kind == "advertiser":
                unknown.advertisers[ident] = account
            else:
                unknown.publishers.add(ident)
        return unknown

    def _resolve(self, cur: Any, unknown: Unknown, charges: list[Charge], result: LedgerResult) -> list[Charge]:
        """Create what is missing (create mode) or reject the events naming it; the accepted charges."""
        reasons = self._reasons(unknown, charges) if not self.create else self._create(cur, unknown, charges, result)
        accepted = []
        for c in charges:
            reason = (reasons.get(("c", c.campaign)) if c.cost else None) or \
                     (reasons.get(("p", c.publisher)) if c.revenue else None)
            if reason:
                result.rejected.append((c, reason))
            else:
                accepted.append(c)
        return accepted

    @staticmethod
    def _reasons(unknown: Unknown, charges: list[Charge]) -> dict[tuple[str, int | None], str]:
        reasons: dict[tuple[str, int | None], str] = {("c", c): f"unknown campaign {c}" for c in unknown.campaigns}
        reasons.update({("c", c): f"advertiser account {a} of campaign {c} does not exist"
                        for c, a in unknown.advertisers.items()})
        reasons.update({("p", p): f"unknown publisher account {p}" for p in unknown.publishers})
        return reasons

    def _create(self, cur: Any, unknown: Unknown, charges: list[Charge],
                result: LedgerResult) -> dict[tuple[str, int | None], str]:
        owners: dict[int, int] = {}
        for c in charges:   # the first event naming an advertiser decides (deterministic: offset order)
            if c.cost and c.campaign in unknown.campaigns and c.advertiser is not None:
                owners.setdefault(c.campaign, c.advertiser)
        reasons: dict[tuple[str, int | None], str] = {
            ("c", c): f"unknown campaign {c} and no advertiser_id to create it with"
            for c in unknown.campaigns - owners.keys()}
        accounts = sorted(set(owners.values()) | set(unknown.advertisers.values()) | unknown.publishers)
        if owners:
            cur.executemany(self._create_campaign, sorted(owners.items()))
        if accounts:
            cur.executemany(self._create_account, [(a,) for a in accounts])
        result.created_campaigns, result.created_accounts = sorted(owners), accounts
        return reasons
