"""``eventd run`` with the real roles against the real services: events posted to the collector's
HTTP input end up, exactly once, in ClickHouse (stats_hourly), MariaDB (campaign spend, account
balances) and HDFS (Avro files), through kill -9 of roles, a role that cannot start, reloads with
a valid and an invalid configuration, and SIGTERM under load; ``eventd status`` is checked in
each of these states. Sinks are read only through their public tables and files."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from typing import Any, Iterator

import pytest
from harness import TestEnv, wait_for
from pipeline import (ROLES, Daemon, Sender, assert_sinks_exact, balances, daemon_settings, pids, provision,
                      teardown)


@pytest.fixture
def world(env: TestEnv) -> Iterator[tuple[TestEnv, dict[str, Any]]]:
    """Provisioned topics, ClickHouse and MariaDB databases and the HDFS base; dropped afterwards."""
    settings = daemon_settings(env)
    provision(env, settings)
    yield env, settings
    teardown(env)


# -- the tests ---------------------------------------------------------------------------------
def test_all_roles_move_events_to_every_sink_and_sigterm_under_load_loses_nothing(world) -> None:
    env, settings = world
    config = env.write_config(settings)
    daemon = Daemon(env, config)
    sender = Sender(env, env.id)
    try:
        daemon.wait_serving()
        sender.send(400)
        assert_sinks_exact(env, sender.accepted)

        sender.start_stream()
        time.sleep(3)
        code, report = daemon.status()                    # under load: healthy, numbers that make sense
        assert code == 0 and report["healthy"], report
        by_role = {p["role"]: p for p in report["processes"]}
        assert set(by_role) == set(ROLES) and all(p["pid"] and p["restarts"] == 0 for p in by_role.values())
        assert by_role["collector"]["events_per_second"] > 0, by_role["collector"]
        assert by_role["clickhouse-loader"]["kafka_lag"] is not None

        code, took = daemon.stop()                        # SIGTERM while events keep coming
        sender.stop_stream()
        assert code == 0, daemon.log()[-5000:]
        assert took < 20 + 10, f"stop took {took:.1f}s, the deadline is 20s"
        assert "killing" not in daemon.log(), "a role missed the graceful deadline"
        assert daemon.eventd("status").returncode == 3       # not running, and status says so
        for rec in (env.tmp / "run" / "procs").glob("*.json"):
            assert json.loads(rec.read_text())["exit_code"] == 0, rec.read_text()

        # Whatever the collector accepted is delivered once the daemon runs again: nothing lost.
        again = Daemon(env, config, "daemon-2")
        try:
            again.wait_serving()
            assert_sinks_exact(env, sender.accepted)
            assert again.stop()[0] == 0
        finally:
            again.close()
    finally:
        sender.stop_stream()
        daemon.close()


def test_roles_killed_with_sigkill_are_restarted_and_totals_stay_exact(world) -> None:
    env, settings = world
    daemon = Daemon(env, env.write_config(settings))
    sender = Sender(env, env.id)
    try:
        before = pids(daemon.wait_serving())
        sender.start_stream()
        time.sleep(3)
        for victim in ("balance-aggregator-0", "hdfs-uploader-0", "clickhouse-loader-0"):
            os.kill(before[victim], signal.SIGKILL)
            time.sleep(1)
        procs = daemon.wait(lambda p: all(p[v]["state"] == "RUNNING" and p[v]["pid"] != before[v] and
                                          p[v]["restarts"] == 1 for v in ("balance-aggregator-0",
                                                                          "hdfs-uploader-0", "clickhouse-loader-0")),
                            90, "the killed roles restarted")
        assert procs["collector-0"]["pid"] == before["collector-0"] and procs["collector-0"]["restarts"] == 0
        time.sleep(3)
        sender.stop_stream()
        assert_sinks_exact(env, sender.accepted)
        assert daemon.status()[0] == 0
        assert daemon.stop()[0] == 0
    finally:
        sender.stop_stream()
        daemon.close()


def test_cannot_start_is_fatal_others_work_and_reloads_apply_or_refuse(world) -> None:
    env, settings = world
    wrong = json.loads(json.dumps(settings))
    wrong["balance_aggregator"]["mariadb"]["password"] = "not-the-password"
    config = env.write_config(wrong)
    daemon = Daemon(env, config)
    sender = Sender(env, env.id)
    try:
        t0 = time.monotonic()
        procs = daemon.wait(lambda p: p.get("balance-aggregator-0", {}).get("state") == "FATAL", 60,
                            "the balance aggregator FATAL")
        assert time.monotonic() - t0 < 60
        others = ("collector", "clickhouse-loader", "hdfs-uploader")
        procs = daemon.wait_serving(others)
        ba = procs["balance-aggregator-0"]
        assert ba["restarts"] == 0 and ba["pid"] is None, ba           # never retried
        assert "cannot start" in ba["note"] and "eventd" in ba["note"], ba   # MariaDB refused user 'eventd'
        code, report = daemon.status()
        assert code == 1 and not report["healthy"]
        assert "balance-aggregator-0 is FATAL" in daemon.eventd("status").stdout

        sender.send(200)                                                # the others keep working
        assert_sinks_exact(env, sender.accepted, ("clickhouse", "hdfs"))
        assert balances(env.db)[0] == Counter()                          # nothing charged yet

        # SIGHUP with an invalid file: refused, nothing restarted, events still flow.
        before = pids(procs)
        good = config.read_text()
        config.write_text(good.replace("stop_timeout: 20s", "stop_timeout: twenty"))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in daemon.log(), 30, "the reload refused")
        code, report = daemon.status()
        assert "daemon.stop_timeout" in report["reload_error"] and str(config) in report["reload_error"]
        assert {k: v for k, v in pids(daemon.procs()).items() if v} == {k: v for k, v in before.items() if v}

        # SIGHUP with the password fixed: only the balance aggregator is (re)started.
        env.write_config(settings)
        daemon.proc.send_signal(signal.SIGHUP)
        procs = daemon.wait_serving()
        assert {k: procs[k]["pid"] for k in before if k != "balance-aggregator-0"} == \
            {k: v for k, v in before.items() if k != "balance-aggregator-0"}
        assert "restarted [balance-aggregator]" in daemon.log()
        code, report = daemon.status()
        assert code == 0 and report["reload_error"] is None, report
        sender.send(100)
        assert_sinks_exact(env, sender.accepted)                        # balances catch up exactly
        assert daemon.stop()[0] == 0
    finally:
        daemon.close()
