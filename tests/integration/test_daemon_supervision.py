"""The daemon's supervision with the real manager, the real supervisord and real processes, whose
role code is a scripted fake (daemon_fakes.py): no services needed, but real processes and
about two minutes, so they live with the integration tests. The same
behaviours against the real roles and services are in tests/integration/test_daemon.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from daemon_fakes import HERE, FakeDaemon, set_behaviour
from daemon_process import all_running
from pipeline import free_range

REPO = Path(__file__).resolve().parents[2]
# Most tests run three single-process roles (the machine is small); the first runs all four roles,
# the collector with two processes.
ALL = {"collector-0", "clickhouse-loader-0", "balance-aggregator-0"}
EVERY = {"collector-0", "collector-1", "clickhouse-loader-0", "balance-aggregator-0", "hdfs-uploader-0"}


def settings(tmp: Path, every: bool = False) -> dict:
    return {
        "node": {"state_dir": str(tmp / "state")},
        "metrics": {"enabled": True, "listen": f"127.0.0.1:{free_range(5)}"},
        "events": {"schema_dir": str(REPO / "conf" / "schemas")},
        "daemon": {"run_dir": str(tmp / "run"), "stop_timeout": "5s", "start_seconds": "1s",
                   "restart_backoff": "500ms", "restart_backoff_max": "4s",
                   "status_listen": f"127.0.0.1:{free_range(1)}"},
        "collector": {"processes": 2 if every else 1, "unix": {"path": str(tmp / "c.sock")}},
        "clickhouse_loader": {"destinations": [{"name": "local", "hosts": ["127.0.0.1:9000"], "database": "x"}]},
        "hdfs_uploader": {"enabled": every},
    }


def write(tmp: Path, data: dict) -> Path:
    path = tmp / "eventd.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def started(tmp_path: Path) -> Iterator[FakeDaemon]:
    d = FakeDaemon(write(tmp_path, settings(tmp_path)))
    try:
        d.wait(all_running(ALL), 60, "every role RUNNING")
        yield d
    finally:
        d.close()


def pids(procs: dict) -> dict[str, int]:
    return {k: v["pid"] for k, v in procs.items()}


def test_every_role_runs_and_status_says_healthy(tmp_path: Path) -> None:
    d = FakeDaemon(write(tmp_path, settings(tmp_path, every=True)))
    try:
        d.wait(all_running(EVERY), 60, "every role RUNNING")
        code, report = d.status()
        assert code == 0 and report["healthy"], report
        for p in report["processes"]:
            os.kill(p["pid"], 0)                       # the pid shown is a live process
            assert p["restarts"] == 0 and p["uptime"] >= 0
            assert p["events_per_second"] > 10, p      # the fake counts ~100 events/s
        text = d.eventd("status")
        assert text.returncode == 0 and "healthy" in text.stdout and "collector" in text.stdout
        page = json.load(urllib.request.urlopen(f"http://{d.settings['daemon']['status_listen']}/status.json",
                                                timeout=30))
        assert page["healthy"] and {r["name"]: r["running"] for r in page["roles"]} == \
            {"collector": 2, "clickhouse-loader": 1, "balance-aggregator": 1, "hdfs-uploader": 1}
    finally:
        d.close()


def test_role_that_cannot_start_is_fatal_at_once_and_the_others_keep_running(tmp_path: Path) -> None:
    set_behaviour(tmp_path, "balance-aggregator", "cannot_start")
    data = settings(tmp_path)
    data["daemon"]["start_seconds"] = "10s"    # it exits "too quickly": supervisor's BACKOFF would retry it
    d = FakeDaemon(write(tmp_path, data))
    try:
        procs = d.wait(lambda p: p.get("balance-aggregator-0", {}).get("state") == "FATAL", 40,
                              "balance-aggregator FATAL")
        time.sleep(3)   # supervisor alone would have retried it (after 1 s, then 2 s) by now
        procs = d.wait(all_running(ALL - {"balance-aggregator-0"}) , 60, "the others RUNNING")
        ba = procs["balance-aggregator-0"]
        assert ba["state"] == "FATAL" and ba["supervisor_state"] == "STOPPED" and ba["restarts"] == 0, ba
        assert "wrong password" in ba["note"] and "wrong password" in ba["last_error"], ba
        assert all(p["state"] == "RUNNING" for k, p in procs.items() if k != "balance-aggregator-0"), procs
        code, report = d.status()
        assert code == 1 and any("balance-aggregator-0 is FATAL" in x for x in report["problems"])
        assert "cannot start" in d.log() and "wrong password" in d.log()

        set_behaviour(tmp_path, "balance-aggregator", "run")    # the operator fixes it
        r = d.eventd("start", "balance-aggregator")
        assert r.returncode == 0, r.stdout + r.stderr
        d.wait(all_running(ALL), 40, "everything RUNNING after the fix")
        assert d.status()[0] == 0
    finally:
        d.close()


def test_killed_role_is_restarted_and_counted(started: FakeDaemon) -> None:
    before = pids(started.procs())
    os.kill(before["clickhouse-loader-0"], signal.SIGKILL)
    procs = started.wait(
        lambda p: p["clickhouse-loader-0"]["state"] == "RUNNING" and
        p["clickhouse-loader-0"]["pid"] != before["clickhouse-loader-0"], 40, "the loader restarted")
    assert procs["clickhouse-loader-0"]["restarts"] == 1
    assert {k: v for k, v in pids(procs).items() if k != "clickhouse-loader-0"} == \
        {k: v for k, v in before.items() if k != "clickhouse-loader-0"}
    assert "restarting in" in started.log()


def test_crash_loop_backs_off(tmp_path: Path) -> None:
    set_behaviour(tmp_path, "balance-aggregator", "crash_after 0.5")
    data = settings(tmp_path)
    data["daemon"]["restart_backoff_max"] = "30s"     # no run lasts that long: the count is never reset
    d = FakeDaemon(write(tmp_path, data))
    try:
        d.wait(lambda p: p.get("balance-aggregator-0", {}).get("restarts", 0) >= 3, 60, "3 restarts")

        def delays() -> list[float]:
            return [float(line.split("restarting in ")[1].split("s ")[0]) for line in d.log().splitlines()
                    if "balance-aggregator-0 exited" in line and "restarting in" in line]
        # The status file can count a restart a moment before its log line reaches the log.
        end = time.monotonic() + 30
        while len(delays()) < 3 and time.monotonic() < end:
            time.sleep(0.2)
        assert delays()[:3] == [0.5, 1.0, 2.0], delays()
    finally:
        d.close()


def test_sighup_restarts_only_the_role_whose_config_changed(started: FakeDaemon, tmp_path: Path) -> None:
    before = pids(started.procs())
    data = settings(tmp_path)
    data["metrics"] = yaml.safe_load(started.config.read_text())["metrics"]
    data["daemon"]["status_listen"] = yaml.safe_load(started.config.read_text())["daemon"]["status_listen"]
    data["clickhouse_loader"]["max_rows"] = 5000
    write(tmp_path, data)
    started.signal(signal.SIGHUP)
    procs = started.wait(
        lambda p: all_running(ALL)(p) and p["clickhouse-loader-0"]["pid"] != before["clickhouse-loader-0"],
        40, "the loader replaced")
    after = pids(procs)
    assert {k: v for k, v in after.items() if k != "clickhouse-loader-0"} == \
        {k: v for k, v in before.items() if k != "clickhouse-loader-0"}
    assert "restarted [clickhouse-loader]" in started.log()


def test_sighup_with_invalid_config_keeps_the_running_one(started: FakeDaemon) -> None:
    before = pids(started.procs())
    good = started.config.read_text()
    started.config.write_text(good.replace("stop_timeout: 5s", "stop_timeout: 5 s please"))
    started.signal(signal.SIGHUP)
    end = time.monotonic() + 10
    while "reload refused" not in started.log() and time.monotonic() < end:
        time.sleep(0.2)
    code, report = started.status()
    assert f"{started.config}:" in report["reload_error"] and "daemon.stop_timeout" in report["reload_error"]
    assert code == 0 and pids(started.procs()) == before    # nothing restarted, everything healthy
    assert "REFUSED" in started.eventd("status").stdout

    started.config.write_text(good)                           # fixed: the next reload clears the error
    started.signal(signal.SIGHUP)
    end = time.monotonic() + 10
    while started.status()[1]["reload_error"] and time.monotonic() < end:
        time.sleep(0.2)
    assert started.status()[1]["reload_error"] is None
    assert pids(started.procs()) == before                    # same config: nothing restarted


def test_sigterm_stops_gracefully_within_the_deadline(tmp_path: Path) -> None:
    set_behaviour(tmp_path, "clickhouse-loader", "slow_stop 2")     # finishes its flush in time
    set_behaviour(tmp_path, "balance-aggregator", "slow_stop 60")   # would not: killed at the deadline
    d = FakeDaemon(write(tmp_path, settings(tmp_path)))
    try:
        procs = d.wait(all_running(ALL), 60, "every role RUNNING")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(20) == 0
        took = time.monotonic() - t0
        assert 5 <= took < 5 + 6, took                                # stop_timeout 5s, plus bookkeeping
        assert all(exited(p["pid"]) for p in procs.values())
        rec = yaml.safe_load((tmp_path / "run" / "procs" / "clickhouse-loader-0.json").read_text())
        assert rec["exit_code"] == 0                                  # it stopped by itself
        assert d.eventd("status").returncode == 3                     # not running
    finally:
        d.close()


def test_second_sigterm_forces_the_stop(tmp_path: Path) -> None:
    set_behaviour(tmp_path, "collector", "slow_stop 60")
    d = FakeDaemon(write(tmp_path, settings(tmp_path)))
    try:
        d.wait(all_running(ALL), 60, "every role RUNNING")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        time.sleep(1)
        d.signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        assert time.monotonic() - t0 < 4
    finally:
        d.close()


def test_operator_stop_and_start(started: FakeDaemon) -> None:
    r = started.eventd("stop", "collector")
    assert r.returncode == 0 and "collector:collector-0: stop ok" in r.stdout, r.stdout + r.stderr
    time.sleep(2)   # more than restart_backoff: the manager must not restart it
    procs = started.procs()
    assert procs["collector-0"]["state"] == "STOPPED" and "operator" in procs["collector-0"]["note"]
    assert started.status()[0] == 1
    r = started.eventd("start", "collector")
    assert r.returncode == 0, r.stdout + r.stderr
    started.wait(all_running(ALL), 40, "collector RUNNING again")
    before = pids(started.procs())
    assert started.eventd("restart", "balance-aggregator").returncode == 0
    assert started.procs()["balance-aggregator-0"]["pid"] != before["balance-aggregator-0"]


def test_status_of_a_daemon_that_is_not_running(tmp_path: Path) -> None:
    config = write(tmp_path, settings(tmp_path))
    r = subprocess.run([sys.executable, "-m", "eventd", "status", "-c", str(config)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "not running" in r.stdout


def test_second_daemon_on_the_same_run_dir_refuses_to_start(started: FakeDaemon) -> None:
    r = subprocess.run([sys.executable, str(HERE / "daemon_fakes.py"), "daemon", str(started.config)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "another eventd daemon is running" in r.stderr


def test_supervisord_dying_takes_the_roles_down_and_exits_for_a_restart(started: FakeDaemon) -> None:
    before = pids(started.procs())
    sup = int((started.config.parent / "run" / "supervisord.pid").read_text())
    os.kill(sup, signal.SIGKILL)
    assert started.proc.wait(20) == 1            # EXIT_TEMPORARY: systemd restarts the service
    assert all(exited(pid) for pid in before.values())


def exited(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it (an orphan's exit status is nobody's business)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
