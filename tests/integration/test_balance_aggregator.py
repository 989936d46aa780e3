"""The balance aggregator against real Kafka and MariaDB: exact money, duplicates, budgets, bad
input, what it subscribes to, setup and start-up failures."""

from __future__ import annotations

import re
import time
from typing import Iterator

import pytest
from kafka import KafkaAdminClient

from harness import KAFKA, RoleProcess, TestEnv, wait_for
from test_balance_support import (Campaign, World, balance_settings, control_events, db_connect, dead_letters,
                                  micros, run_setup)

pytestmark = pytest.mark.integration

CAMPAIGNS = [Campaign(100 + i, 10 + i % 3) for i in range(12)]
PUBLISHERS = [500, 501, 502, 503]


@pytest.fixture
def world(env: TestEnv) -> Iterator[World]:
    w = World(env)
    yield w
    w.close()


def test_balances_are_the_exact_sums_of_the_events(world: World, processes: list[RoleProcess]) -> None:
    world.add_campaigns(CAMPAIGNS, PUBLISHERS)
    world.random_events(600, CAMPAIGNS, PUBLISHERS)
    # Edge amounts: one micro-unit, the largest long an event can carry spread over a few events.
    world.event("click", CAMPAIGNS[0], PUBLISHERS[0], 1, 1)
    world.event("conversion", CAMPAIGNS[1], PUBLISHERS[1], 123_456_789_012, 987_654_321)
    processes.append(proc := world.start())
    world.wait_applied(proc=proc)
    world.random_events(300, CAMPAIGNS, PUBLISHERS)    # a second stream of windows on top
    world.wait_applied(proc=proc)
    world.assert_exact()
    assert sum(world.stored_offsets().values()) == world.totals.events
    assert proc.terminate() == 0
    assert not re.search(r"(ERROR|CRITICAL) \[[^]]+\] eventd\.", proc.log())   # kafka-python's own noise aside


def test_a_collector_resend_charges_nothing(world: World, processes: list[RoleProcess]) -> None:
    world.add_campaigns(CAMPAIGNS, PUBLISHERS)
    world.random_events(200, CAMPAIGNS, PUBLISHERS)
    processes.append(proc := world.start())
    world.wait_applied(proc=proc)
    first = list(world.produced)
    # Resent while running: the ids are in memory.
    world.resend(first[-80:])
    world.random_events(50, CAMPAIGNS, PUBLISHERS)
    world.wait_applied(proc=proc)
    world.assert_exact()
    # Resent after a restart: the window is rebuilt from the messages before the stored offset.
    assert proc.terminate() == 0
    world.resend(first[:40] + first[-40:])
    processes.append(proc := world.start("aggregator-2"))
    world.wait_applied(proc=proc)
    world.assert_exact()
    assert "skipped 80 duplicate" in proc.log() or "duplicate" in proc.log()


def test_campaigns_reaching_a_budget_are_stopped_once_with_one_control_event(
        world: World, processes: list[RoleProcess]) -> None:
    total = Campaign(1, 10, total_budget=10_000_000)              # 10.000000
    daily = Campaign(2, 11, daily_budget=5_000_000)
    both = Campaign(3, 12, total_budget=3_000_000, daily_budget=50_000_000)
    exact = Campaign(4, 13, total_budget=2_000_000)               # reached exactly, not exceeded
    room = Campaign(5, 14, total_budget=100_000_000, daily_budget=100_000_000)   # keeps its budget
    world.add_campaigns([total, daily, both, exact, room], [500])
    processes.append(proc := world.start())
    for _ in range(9):       # 9.000000 of 10: still active
        world.event("impression", total, 500, 1_000_000, 0)
    world.event("click", exact, 500, 1_999_999, 0)
    world.wait_applied(proc=proc)
    assert world.sql("SELECT status FROM campaigns WHERE id IN (1, 4)") == [("active",), ("active",)]
    for _ in range(3):       # crosses 10 by 2.5 in three windows: stopped at the first, overspend grows
        world.event("impression", total, 500, 1_500_000, 0)
        world.flush()
        time.sleep(0.5)
    world.event("click", exact, 500, 1, 0)
    for _ in range(6):
        world.event("impression", daily, 500, 1_000_000, 0)
        world.event("click", both, 500, 1_000_000, 0)
        world.event("click", room, 500, 1_000_000, 0)
    world.wait_applied(proc=proc)
    rows = {r[0]: r[1:] for r in world.sql("SELECT id, status, status_reason, status_changed_at IS NOT NULL, "
                                           "spent, overspend FROM campaigns")}
    assert rows[1][:3] == ("stopped", "total_budget", 1) and micros(rows[1][3]) == 13_500_000
    assert micros(rows[1][4]) == 3_500_000          # everything charged beyond the budget is recorded
    assert rows[2][:3] == ("stopped", "daily_budget", 1) and micros(rows[2][4]) == 1_000_000
    assert rows[3][:3] == ("stopped", "total_budget", 1) and micros(rows[3][4]) == 3_000_000
    assert rows[4][:3] == ("stopped", "total_budget", 1) and micros(rows[4][4]) == 0
    assert rows[5][:3] == ("active", None, 0) and micros(rows[5][4]) == 0
    events = control_events(world.env, 4)
    assert sorted(e["campaign_id"] for e in events) == [1, 2, 3, 4]
    assert len({e["id"] for e in events}) == 4
    by_id = {e["campaign_id"]: e for e in events}
    assert by_id[1]["type"] == "campaign_stopped" and by_id[1]["total_budget"] == "10.000000"
    assert by_id[2]["reason"] == "daily_budget" and by_id[2]["daily_budget"] == "5.000000"
    wait_for(lambda: world.sql("SELECT COUNT(*) FROM eventd_balance_outbox") == [(0,)], 10, "the outbox to empty")
    world.assert_exact()
    assert proc.terminate() == 0


def test_unknown_campaigns_and_accounts_are_dead_lettered_and_never_block_the_window(
        world: World, processes: list[RoleProcess]) -> None:
    world.add_campaigns(CAMPAIGNS[:2], PUBLISHERS[:1])
    ghost = Campaign(999, 77)
    world.event("impression", CAMPAIGNS[0], PUBLISHERS[0], 1_000, 2_000)
    bad = [world.event("impression", ghost, PUBLISHERS[0], 5_000, 0, count=False),
           world.event("click", CAMPAIGNS[1], 4242, 0, 3_000, count=False)]
    world.event("click", CAMPAIGNS[1], PUBLISHERS[0], 7_000, 1)
    processes.append(proc := world.start())
    world.wait_applied(proc=proc)
    world.assert_exact()
    letters = dead_letters(world.env, 2)
    assert sorted(r.value for r in letters) == sorted(m[2] for m in bad)
    reasons = sorted(dict(r.headers)["eventd.reason"].decode() for r in letters)
    assert reasons == ["InvalidEvent: unknown campaign 999", "InvalidEvent: unknown publisher account 4242"]
    assert proc.terminate() == 0


def test_unknown_campaigns_are_created_when_configured(env: TestEnv, processes: list[RoleProcess]) -> None:
    world = World(env, unknown_campaign="create")
    try:
        world.add_campaigns(CAMPAIGNS[:1], PUBLISHERS[:1])
        new = Campaign(777, 70)
        world.event("impression", new, 600, 4_000, 1_000)
        world.event("impression", CAMPAIGNS[0], PUBLISHERS[0], 1, 1)
        processes.append(proc := world.start())
        world.wait_applied(proc=proc)
        world.assert_exact()
        assert world.sql("SELECT advertiser_id, total_budget, status FROM campaigns WHERE id = 777") == \
            [(70, None, "active")]
        assert proc.terminate() == 0
    finally:
        world.close()


def test_only_the_money_topics_are_read(world: World, processes: list[RoleProcess]) -> None:
    world.add_campaigns(CAMPAIGNS[:1], PUBLISHERS[:1])
    world.event("impression", CAMPAIGNS[0], PUBLISHERS[0], 1, 1)
    processes.append(proc := world.start())
    world.wait_applied(proc=proc)
    admin = KafkaAdminClient(bootstrap_servers=KAFKA)
    try:
        group = admin.describe_groups([f"{world.env.id}-balances"])[f"{world.env.id}-balances"]
    finally:
        admin.close()
    [member] = group["members"]
    subscribed = set(member["member_metadata"]["topics"])
    assigned = {a["topic"]: sorted(a["partitions"]) for a in member["member_assignment"]["assigned_partitions"]}
    money = {world.env.topic(t) for t in ("impression", "click", "conversion")}
    assert subscribed == money and assigned == {t: [0, 1, 2] for t in money}
    assert world.env.topic("bid") not in proc.log()
    assert proc.terminate() == 0


def test_setup_twice_changes_nothing_the_second_time(env: TestEnv) -> None:
    config = env.write_config(balance_settings(env))
    try:
        first = run_setup(env, config)
        assert f"created database {env.db}" in first and "created table" in first
        assert run_setup(env, config).strip() == "nothing to change: everything exists"
    finally:
        conn = db_connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{env.db}`")
        conn.close()


def test_wrong_password_cannot_start(world: World, processes: list[RoleProcess]) -> None:
    settings = world.settings
    settings["balance_aggregator"]["mariadb"]["password"] = "not-the-password"
    processes.append(proc := world.start(config=world.env.write_config(settings, "wrong.yaml")))
    assert proc.proc.wait(60) == 3
    assert "cannot start" in proc.log() and "refused user 'eventd'" in proc.log()
