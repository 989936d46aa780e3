"""Incident state: one alert per incident, one resolved message after resolve_after of calm,
flapping does not re-alert, undecided keys stay open, too many keys become one summary incident,
and a resolved incident's frozen baseline stays the reference until it leaves the baseline window."""

from __future__ import annotations

from eventd.config.monitor import ClockRuleConfig
from eventd.roles.monitor.incidents import OVERFLOW_KEY, IncidentBook
from eventd.roles.monitor.rules import Evaluation, Finding

RULE = ClockRuleConfig(name="r", kind="clock", by="host", event_types=(), step=10, window=60, resolve_after=30,
                       severity="warning", past=600, future=60, min_events=1, min_share=0.1)
S = 10_000   # one step, ms


def firing(*keys: str) -> Evaluation:
    return Evaluation({k: Finding(f"{k} is odd", {"expected": 100, "key": k}) for k in keys})


def run(book: IncidentBook, steps: list[Evaluation], start: int = 0) -> list[tuple[int, str, str]]:
    out = []
    for i, ev in enumerate(steps):
        out += [(start + i, m.kind, m.key) for m in book.update(RULE, ev, (start + i) * S)]
    return out


def test_one_alert_then_one_resolved_message() -> None:
    book = IncidentBook(max_incidents=10)
    messages = run(book, [firing("a")] * 20 + [firing()] * 5)
    assert messages == [(0, "alert", "a"), (23, "resolved", "a")]      # clear from step 20, 30 s later


def test_flapping_within_resolve_after_does_not_alert_again() -> None:
    book = IncidentBook(max_incidents=10)
    flapping = [firing("a"), firing(), firing(), firing("a"), firing(), firing("a")] * 5
    assert run(book, flapping) == [(0, "alert", "a")]
    assert book.count("r") == 1


def test_undecided_keys_stay_open() -> None:
    book = IncidentBook(max_incidents=10)
    run(book, [firing("a")])
    assert run(book, [Evaluation(undecided={"a"})] * 50, start=1) == []
    assert book.open_keys("r") == {"a"}


def test_many_keys_at_once_are_one_summary_incident() -> None:
    book = IncidentBook(max_incidents=3)
    keys = [f"site-{i}" for i in range(50)]
    messages = run(book, [firing("x")] + [firing("x", *keys)] * 10 + [firing("x")] * 5)
    assert messages == [(0, "alert", "x"), (1, "alert", OVERFLOW_KEY), (14, "resolved", OVERFLOW_KEY)]
    assert book.open_keys("r") == {"x"}            # the incident opened before the summary goes on


def test_summary_incident_names_the_count_and_first_keys() -> None:
    book = IncidentBook(max_incidents=2)
    [msg] = book.update(RULE, firing("a", "b", "c"), 0)
    assert msg.key == OVERFLOW_KEY and msg.details == {"count": 3, "keys": ["a", "b", "c"]}
    assert "3 keys of rule r" in msg.summary and "a is odd" in msg.summary


def test_ids_are_deterministic() -> None:
    first, second = book_ids(IncidentBook(10)), book_ids(IncidentBook(10))
    assert first == second and len(set(first)) == 2
    assert first[0].startswith("r-0-")


def book_ids(book: IncidentBook) -> list[str]:
    return [m.incident for m in book.update(RULE, firing("k1", "k2"), 0)]


def test_frozen_baseline_outlives_the_incident_for_one_span() -> None:
    book = IncidentBook(max_incidents=10)
    run(book, [firing("a"), firing(), firing(), firing(), firing()])     # resolved at step 3 (clear since 1)
    assert book.open_keys("r") == set()
    assert book.frozen("r", 4 * S) == {"a": {"expected": 100, "key": "a"}}
    assert book.frozen("r", 1 * S + 60_000) == {}                        # clear_since + span (the window)
