"""The money side of a window without MariaDB: integer sums, unknown campaigns and accounts
(rejected or created), budget decisions, the control event, error classes, fault points."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pymysql
import pytest

from eventd.config.balances import TABLES, TableNames, Tables
from eventd.errors import CannotStart
from eventd.kafka.consumer_loop import FatalSinkError, RetryableError
from eventd.roles.balance_aggregator.budget import Budgets, micros
from eventd.roles.balance_aggregator.events import Charge
from eventd.roles.balance_aggregator.ledger import SPEND, Ledger
from eventd.roles.balance_aggregator.schema import Sql
from eventd.roles.balance_aggregator.store import classify
from eventd.roles.balance_aggregator.window import Window

D = date(2026, 1, 2)
SQL = Sql(Tables(**{k: TableNames(t, dict(c)) for k, (t, c) in TABLES.items()},
                 status_active="active", status_stopped="stopped"))


def charge(offset: int, campaign: int | None, cost: int, publisher: int | None = None, revenue: int = 0,
           advertiser: int | None = None, day: date = D) -> Charge:
    return Charge("t", 0, offset, f"e{offset}", campaign, advertiser, publisher, cost, revenue,
                  day if cost else None, None, b"v%d" % offset)


def test_window_sums_are_integers_per_campaign_day_and_publisher() -> None:
    w = Window.of([charge(0, 1, 1, 9, 5), charge(1, 1, 999_999, 9, 0), charge(2, 2, 0, 8, 7),
                   charge(3, 1, 2, day=date(2026, 1, 3))])
    assert w.spend == {1: 1_000_002} and w.revenue == {9: 5, 8: 7}
    assert w.day_spend == {(1, D): 1_000_000, (1, date(2026, 1, 3)): 2}
    assert (w.events, w.cost_total, w.revenue_total) == (4, 1_000_002, 12)


class FakeCursor:
    """Answers the unknown-ids query with ``unknown`` rows and records every statement."""

    def __init__(self, unknown: list[tuple[str, int, int | None]]) -> None:
        self.unknown, self.statements = unknown, []  # type: ignore[var-annotated]
        self._rows: list[Any] = []

    def execute(self, statement: str, args: Any = None) -> int:
        self.statements.append((statement, args))
        self._rows = self.unknown if "UNION ALL" in statement else []
        return 0

    def executemany(self, statement: str, rows: list[Any]) -> int:
        self.statements.append((statement, list(rows)))
        return len(rows)

    def fetchall(self) -> list[Any]:
        return self._rows

    def loaded(self, table: str) -> list[Any]:
        """The rows of the last load of temporary table ``table``."""
        return [rows for s, rows in self.statements if s.startswith(f"INSERT INTO {table} ")][-1]


def test_events_for_unknown_campaigns_and_accounts_are_rejected_and_the_rest_applied() -> None:
    cur = FakeCursor([("campaign", 2, None), ("advertiser", 3, 33), ("publisher", 8, None)])
    charges = [charge(0, 1, 10, 9, 1), charge(1, 2, 20), charge(2, 3, 30), charge(3, 1, 5, 8, 4),
               charge(4, 2, 0, 9, 6)]    # revenue only: campaign 2 is not charged, so it is not refused
    result = Ledger(SQL, create=False).apply(cur, charges)
    assert [(c.offset, reason) for c, reason in result.rejected] == [
        (1, "unknown campaign 2"), (2, "advertiser account 33 of campaign 3 does not exist"),
        (3, "unknown publisher account 8")]
    assert result.window.spend == {1: 10} and result.window.revenue == {9: 7}
    assert cur.loaded(SPEND) == [(1, 10)]       # reloaded without the rejected events
    assert any(s.startswith("UPDATE `accounts`") for s, _ in cur.statements)


def test_create_mode_creates_campaigns_from_the_first_advertiser_and_missing_accounts() -> None:
    cur = FakeCursor([("campaign", 2, None), ("campaign", 4, None), ("publisher", 8, None)])
    charges = [charge(0, 2, 10, advertiser=None), charge(1, 2, 10, advertiser=21), charge(2, 2, 1, advertiser=22),
               charge(3, 4, 5), charge(4, 1, 1, 8, 1)]
    result = Ledger(SQL, create=True).apply(cur, charges)
    assert result.created_campaigns == [2] and result.created_accounts == [8, 21]
    assert [(c.offset, r) for c, r in result.rejected] == [(3, "unknown campaign 4 and no advertiser_id to "
                                                                "create it with")]
    created = [rows for s, rows in cur.statements if s.startswith("INSERT INTO `campaigns`")]
    assert created == [[(2, 21)]]


def row(spent: str, total: str | None, daily: str | None, day_spent: str | None) -> tuple[Any, ...]:
    dec = lambda v: None if v is None else Decimal(v)  # noqa: E731
    return (7, 70, dec(spent), dec(total), dec(daily), dec(day_spent))


@pytest.mark.parametrize("values, reason, overspend", [
    (("10.000000", "10.000000", None, None), "total_budget", 0),
    (("12.500001", "10.000000", "50", "12.500001"), "total_budget", 2_500_001),
    (("12.000000", None, "5.000000", "5.000001"), "daily_budget", 1),
    (("12.000000", "11.000000", "5.000000", "9.000000"), "total_budget", 4_000_000),
])
def test_budget_decisions_name_the_reason_and_the_overspend(values: tuple[Any, ...], reason: str,
                                                            overspend: int) -> None:
    stop = Budgets._decide(row(*values), D, datetime(2026, 1, 2, 3, 4, 5))
    assert (stop.reason, stop.overspend) == (reason, overspend)


def test_the_control_event_is_json_with_money_as_exact_text() -> None:
    stop = Budgets._decide(row("10.000001", "10.000000", None, "3.5"), D, datetime(2026, 1, 2, 3, 4, 5))
    msg = stop.control_event("ctl", "h1")
    body = json.loads(msg.value)
    assert msg.topic == "ctl" and msg.key == b"7" and body["id"] == msg.event_id
    assert body["type"] == "campaign_stopped" and body["campaign_id"] == 7 and body["advertiser_id"] == 70
    assert (body["spent"], body["total_budget"], body["daily_budget"], body["overspend"]) == \
        ("10.000001", "10.000000", None, "0.000001")
    assert body["day"] == "2026-01-02" and body["stopped_at"] == "2026-01-02T03:04:05Z"
    assert micros(Decimal("99999999999999.999999")) == 99_999_999_999_999_999_999


@pytest.mark.parametrize("error, kind", [
    (pymysql.err.OperationalError(2013, "Lost connection"), RetryableError),
    (pymysql.err.OperationalError(2003, "Can't connect"), RetryableError),
    (pymysql.err.OperationalError(1213, "Deadlock found"), RetryableError),
    (pymysql.err.OperationalError(1205, "Lock wait timeout"), RetryableError),
    (pymysql.err.InterfaceError(0, ""), RetryableError),
    (pymysql.err.OperationalError(1054, "Unknown column 'spent'"), FatalSinkError),
    (pymysql.err.ProgrammingError(1146, "Table doesn't exist"), FatalSinkError),
    (pymysql.err.DataError(1264, "Out of range value"), FatalSinkError),
])
def test_mariadb_errors_are_retryable_or_fatal_by_error_number(error: Exception, kind: type) -> None:
    assert type(classify(error, "applying")) is kind


def test_wrong_credentials_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventd.config.balances import MariaDBConfig
    from eventd.config.secret import Secret
    from eventd.roles.balance_aggregator import store

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise pymysql.err.OperationalError(1045, "Access denied for user 'eventd'")
    monkeypatch.setattr(store, "connect", refuse)
    cfg = MariaDBConfig("127.0.0.1", 1, "db", "eventd", Secret("x", "yaml"), 1.0, 1.0, 1, "")
    with pytest.raises(CannotStart, match="refused user 'eventd' on database 'db'"):
        store.connect_or_explain(cfg, "db")
