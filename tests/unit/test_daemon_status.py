"""sd_notify datagrams, the run records, and how status presents each state (no processes)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from eventd.daemon import runstate
from eventd.daemon.child import LastError
from eventd.daemon.control import lenient_run_dir
from eventd.daemon.probe import Rates
from eventd.daemon.report import Report, format_text, process_report, shown_state
from eventd.daemon.rpc import ProcInfo
from eventd.daemon.runstate import DaemonState, RunRecord, Verdict
from eventd.daemon.systemd import Notifier

NOW = time.time()


def test_notifier_sends_datagrams_to_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.watchdog_interval == 1.0
        n.ready("3 running")
        assert server.recv(1000) == b"READY=1\nSTATUS=3 running"
        n.reloading()
        msg = server.recv(1000).decode().split("\n")
        assert msg[0] == "RELOADING=1" and msg[1].startswith("MONOTONIC_USEC=")
        n.watchdog()
        assert server.recv(1000) == b"WATCHDOG=1"
        n.watchdog()                                   # not due yet: nothing sent
        n.stopping()
        assert server.recv(1000) == b"STOPPING=1"


def test_notifier_outside_systemd_does_nothing() -> None:
    n = Notifier({})
    assert n.address is None and n.watchdog_interval is None
    n.ready()
    n.watchdog()
    n.stopping()
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None  # not ours


def test_notifier_abstract_socket() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@/org/x"}).address == "\0/org/x"


def test_run_record_round_trip_and_staleness(tmp_path: Path) -> None:
    os.makedirs(tmp_path / runstate.PROCS)
    rec = RunRecord("collector", 1, 42, NOW, starts=3, exit_code=1, error="boom", error_at=NOW)
    rec.write(str(tmp_path))
    assert RunRecord.read(str(tmp_path), "collector", 1) == rec
    assert RunRecord.read(str(tmp_path), "collector", 0) is None
    assert rec.describes_run_started(int(NOW)) and not rec.describes_run_started(NOW + 5)


def test_daemon_state_and_holds(tmp_path: Path) -> None:
    st = DaemonState(1, NOW, "/etc/eventd/eventd.yaml", roles=["collector"], metrics={"collector-0": "h:1"},
                     verdicts={"collector:collector-0": Verdict(fatal="x")})
    st.write(str(tmp_path))
    assert DaemonState.read(str(tmp_path)) == st
    runstate.set_held(str(tmp_path), "collector", True)
    assert runstate.is_held(str(tmp_path), "collector")
    runstate.set_held(str(tmp_path), "collector", False)
    assert not runstate.is_held(str(tmp_path), "collector")


def test_daemon_lock_tells_whether_a_daemon_runs(tmp_path: Path) -> None:
    assert not runstate.daemon_running(str(tmp_path))
    lock = runstate.take_lock(str(tmp_path))
    assert lock is not None and runstate.daemon_running(str(tmp_path))
    assert runstate.take_lock(str(tmp_path)) is None
    lock.close()
    assert not runstate.daemon_running(str(tmp_path))


def proc(state: str, pid: int = 0, spawnerr: str = "") -> ProcInfo:
    return ProcInfo("collector", "collector-0", state, pid, int(NOW) - 100, 0, int(NOW), 0, spawnerr)


def test_shown_state() -> None:
    assert shown_state(proc("RUNNING", 5), None) == "RUNNING"
    assert shown_state(proc("STOPPED"), Verdict(fatal="bad password")) == "FATAL"
    assert shown_state(proc("EXITED"), Verdict(restart_at=NOW + 3, crashes=2)) == "BACKOFF"
    assert shown_state(proc("STOPPED"), Verdict()) == "STOPPED"


def test_process_report_fields() -> None:
    rec = RunRecord("collector", 0, 5, NOW - 100, starts=4, error="lost kafka", error_at=NOW - 30)
    r = process_report(proc("RUNNING", 5), Verdict(), rec, False, Rates(12.5, 7), NOW)
    assert (r.state, r.pid, r.restarts, r.events_per_second, r.kafka_lag) == ("RUNNING", 5, 3, 12.5, 7)
    assert 99 <= r.uptime <= 101 and r.healthy and r.last_error == "lost kafka"
    fatal = process_report(proc("STOPPED"), Verdict(fatal="cannot start: bad password"), None, False, None, NOW)
    assert not fatal.healthy and fatal.pid is None and fatal.note == "cannot start: bad password"
    held = process_report(proc("STOPPED"), Verdict(), None, True, None, NOW)
    assert "operator" in (held.note or "")


def test_text_report() -> None:
    r = Report("/run", True, daemon_pid=7, daemon_uptime=3700, config_path="/etc/e.yaml",
               reload_error="/etc/e.yaml:3: kafka: bad")
    r.processes.append(process_report(proc("STOPPED"), Verdict(fatal="bad password"), None, False, None, NOW))
    r.problems.append("collector-0 is FATAL")
    text = format_text(r)
    assert "pid 7, up 1h01m" in text and "REFUSED" in text and "FATAL" in text and "bad password" in text
    assert text.splitlines()[-1].startswith("UNHEALTHY")
    assert format_text(Report("/run", False)) == "eventd: not running (run_dir /run)"
    assert not Report("/run", False).healthy and Report("/run", True).healthy


def test_last_error_keeps_the_first_line_of_the_last_error() -> None:
    import logging
    h = LastError()
    logger = logging.getLogger("eventd.test_last_error")
    logger.addHandler(h)
    logger.propagate = False
    logger.warning("not an error")
    assert h.message is None
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("role failed")
    assert h.message == "role failed: ValueError: bad"
    logger.error("cannot start: %s", "no such table")
    assert h.message == "cannot start: no such table"


def test_lenient_run_dir(tmp_path: Path) -> None:
    f = tmp_path / "e.yaml"
    f.write_text("daemon: {run_dir: rel/run, stop_timeout: nonsense}\n")
    assert lenient_run_dir(str(f)) == str(tmp_path / "rel" / "run")
    f.write_text("node: {state_dir: /srv/e}\n")
    assert lenient_run_dir(str(f)) == "/srv/e/run"
    f.write_text("{{{ not yaml")
    assert lenient_run_dir(str(f)) == "/var/lib/eventd/run"
