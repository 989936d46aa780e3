"""The restart policy against supervisor's states, with a fake clock (no processes)."""

from __future__ import annotations

from eventd.daemon.policy import Action, RestartPolicy
from eventd.daemon.rpc import ProcInfo
from eventd.daemon.runstate import RunRecord

T0 = 1_700_000_000


def info(state: str, start: int = T0, exitstatus: int = 0, pid: int = 0) -> ProcInfo:
    return ProcInfo("balance-aggregator", "balance-aggregator-0", state, pid, start, start + 1, start + 1,
                    exitstatus, "")


def record(started_at: float, exit_code: int | None, error: str | None = None) -> RunRecord:
    return RunRecord("balance-aggregator", 0, 123, started_at, exit_code=exit_code, error=error)


def policy() -> RestartPolicy:
    return RestartPolicy(backoff=1.0, backoff_max=8.0)


def test_quick_cannot_start_is_stopped_and_fatal_with_the_reason() -> None:
    p = policy()
    rec = record(T0 + 0.3, 3, "cannot start: Access denied for user 'eventd'")
    assert p.decide(info("BACKOFF"), rec, False, T0 + 1) is Action.STOP
    v = p.verdicts["balance-aggregator:balance-aggregator-0"]
    assert v.fatal == "cannot start: Access denied for user 'eventd'" and v.restart_at is None
    # Stopped now: it stays FATAL, nothing more happens however long we wait.
    for t in range(2, 100, 10):
        assert p.decide(info("STOPPED"), rec, False, T0 + t) is Action.NONE
    assert v.fatal


def test_late_cannot_start_and_config_error_are_not_restarted() -> None:
    for code in (3, 78):
        p = policy()
        assert p.decide(info("EXITED", exitstatus=code), None, False, T0 + 10) is Action.NONE
        assert p.decide(info("EXITED", exitstatus=code), None, False, T0 + 100) is Action.NONE
        assert f"code {code}" in (p.verdicts["balance-aggregator:balance-aggregator-0"].fatal or "")


def test_record_of_an_earlier_run_is_not_taken_for_the_current_one() -> None:
    p = policy()
    stale = record(T0 - 50, 3, "old failure")          # the new process has not written its record yet
    assert p.decide(info("BACKOFF"), stale, False, T0 + 1) is Action.NONE
    assert p.verdicts["balance-aggregator:balance-aggregator-0"].fatal is None


def test_crashes_are_restarted_with_doubling_capped_backoff() -> None:
    p = policy()
    now, delays = float(T0), []
    for crash in range(1, 7):
        start = int(now)
        assert p.decide(info("RUNNING", start, pid=9), None, False, now + 1) is Action.NONE
        now += 2                                            # crashed after 2 s (shorter than backoff_max)
        assert p.decide(info("EXITED", start, exitstatus=1), None, False, now) is Action.NONE
        v = p.verdicts["balance-aggregator:balance-aggregator-0"]
        delays.append(v.restart_at - now)
        assert p.decide(info("EXITED", start, exitstatus=1), None, False, v.restart_at - 0.01) is Action.NONE
        now = v.restart_at
        assert p.decide(info("EXITED", start, exitstatus=1), None, False, now) is Action.START
    assert delays == [1, 2, 4, 8, 8, 8]


def test_a_long_run_resets_the_crash_count() -> None:
    p = policy()
    p.decide(info("EXITED", exitstatus=1), None, False, T0 + 2)
    p.decide(info("EXITED", exitstatus=1), None, False, T0 + 3)          # START
    p.decide(info("RUNNING", T0 + 3, pid=9), None, False, T0 + 3 + 8)    # up for backoff_max
    assert p.verdicts["balance-aggregator:balance-aggregator-0"].crashes == 0


def test_killed_by_signal_is_a_crash() -> None:
    p = policy()
    assert p.decide(info("EXITED", exitstatus=-1), record(T0, None), False, T0 + 5) is Action.NONE
    assert p.decide(info("EXITED", exitstatus=-1), record(T0, None), False, T0 + 6) is Action.START


def test_supervisor_fatal_after_quick_temporary_failures_is_retried_after_backoff_max() -> None:
    p = policy()
    rec = record(T0 + 0.2, 1, "NoBrokersAvailable")
    assert p.decide(info("FATAL"), rec, False, T0 + 1) is Action.NONE
    assert p.verdicts["balance-aggregator:balance-aggregator-0"].fatal is None
    assert p.decide(info("FATAL"), rec, False, T0 + 1 + 7.9) is Action.NONE
    assert p.decide(info("FATAL"), rec, False, T0 + 1 + 8) is Action.START


def test_held_by_the_operator_is_never_restarted() -> None:
    p = policy()
    for t in (2, 50, 500):
        assert p.decide(info("EXITED", exitstatus=1), None, True, T0 + t) is Action.NONE
        assert p.decide(info("STOPPED"), None, True, T0 + t) is Action.NONE


def test_operator_start_clears_fatal() -> None:
    p = policy()
    p.decide(info("BACKOFF"), record(T0 + 0.5, 3, "bad password"), False, T0 + 1)
    assert p.decide(info("STARTING", T0 + 60, pid=5), None, False, T0 + 60) is Action.NONE
    assert p.verdicts["balance-aggregator:balance-aggregator-0"].fatal is None


def test_forget_starts_afresh() -> None:
    p = policy()
    p.decide(info("EXITED", exitstatus=3), None, False, T0 + 2)
    p.forget("balance-aggregator:balance-aggregator-0")
    assert "balance-aggregator:balance-aggregator-0" not in p.verdicts
