"""What the person running a replay sees: reject reasons, the summary, progress output."""

from __future__ import annotations

import io
import logging

import pytest

from eventd.errors import InvalidEvent
from eventd.replay.progress import CHECK_EVERY, Progress
from eventd.replay.summary import Counts, reason_key, render


@pytest.mark.parametrize("exc, key", [
    (InvalidEvent("missing", "time"), "time: missing"),
    (InvalidEvent("'x' is not ISO-8601", "time"), "time: invalid"),
    (InvalidEvent("not valid JSON: Expecting value"), "not valid JSON"),
    (InvalidEvent("invalid UTF-8 at byte 3"), "invalid UTF-8"),
    (InvalidEvent("expected a JSON object, got list"), "not a JSON object"),
    (InvalidEvent("line of 9 bytes is over the limit of 5"), "line too long"),
])
def test_reasons_group_by_field_and_kind(exc: InvalidEvent, key: str) -> None:
    assert reason_key(exc) == key


def test_summary_shows_every_count() -> None:
    counts = Counts(read=110, accepted=90, delivered_before=5, duplicates=2, blank=3, files=2)
    counts.rejected.update({"time: missing": 8, "not valid JSON": 4})
    text = render(counts, 2.0, "kafka", False, "done")
    figures = {l.split(":")[0].strip(): l.split(":")[1].split()[0] for l in text.splitlines()[1:] if ":" in l}
    assert figures["lines read"] == "110" and figures["accepted"] == "88"      # 90 handed over, 2 already there
    assert figures["duplicates skipped"] == "7" and figures["rejected"] == "12"
    assert figures["blank lines"] == "3" and figures["elapsed"] == "2.0s"
    assert "5 delivered by an earlier run, 2 already in kafka" in text
    assert "8  time: missing" in text and "4  not valid JSON" in text and "(55 lines/s)" in text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_terminal_gets_a_bar_with_rate_and_eta() -> None:
    out, clock, position = io.StringIO(), Clock(), [0]
    p = Progress(out, tty=True, clock=clock)
    p.start_file("a.json", 1000, lambda: position[0])
    position[0], clock.now = 250, 10.0
    for _ in range(CHECK_EVERY):
        p.tick()
    text = out.getvalue()
    assert text.startswith("\r[######") and " 25% a.json" in text
    assert f"{CHECK_EVERY} lines" in text and "51/s" in text and "ETA 0:00:30" in text


def test_without_a_terminal_progress_is_a_periodic_log_line(caplog: pytest.LogCaptureFixture) -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(out, tty=False, interval=10.0, clock=clock)
    p.start_file("<stdin>", None, lambda: 0)
    caplog.set_level(logging.INFO)
    clock.now = 5.0
    for _ in range(CHECK_EVERY):
        p.tick()
    assert not caplog.records            # before the interval: nothing
    clock.now = 11.0
    for _ in range(CHECK_EVERY):
        p.tick()
    assert out.getvalue() == ""
    assert [r.getMessage() for r in caplog.records] == [f"<stdin>: {2 * CHECK_EVERY} lines read in all, 93 lines/s"]
