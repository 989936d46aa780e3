"""The replay pipeline with an in-memory target: what is delivered, rejected, skipped on a
re-run, and resumed after an interruption — exactly."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from eventd.config import load_config
from eventd.event.codec import Decoder
from eventd.event.envelope import Event, EventParser
from eventd.event.schemas import SchemaStore
from eventd.replay.ledger import Checkpoint
from eventd.replay.pipeline import Pipeline
from eventd.replay.progress import Progress
from eventd.replay.reader import Input
from eventd.replay.rejects import Rejects
from eventd.replay.sinks import ReplayFailed
from eventd.replay.summary import Counts
from eventd.replay.testdata import generate

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(CFG.events.schema_dir)


class FakeTarget:
    """A streaming target that keeps events and reports checkpoints up to ``ack_limit`` (None: all)."""

    name, key, already, streaming = "fake", "fake-1", 0, True
    block_lines, block_bytes = 1000, 1 << 20

    def __init__(self, ack_limit: int | None = None, streaming: bool = True) -> None:
        self.events: list[Event] = []
        self.values: list[bytes] = []
        self.warmed: list[int] = []
        self.marked: list[Checkpoint] = []
        self.ack_limit = ack_limit
        self.streaming = streaming
        self.on_durable = lambda cps: None

    def begin(self, stream: str) -> None:
        self.stream = stream

    def add(self, event: Event, value: bytes, line: int) -> None:
        self.events.append(event)
        self.values.append(value)

    def warm(self, event: Event, value: bytes, line: int) -> None:
        self.warmed.append(line)

    def mark(self, checkpoint: Checkpoint) -> None:
        self.marked.append(checkpoint)
        if self.ack_limit is None or len(self.marked) <= self.ack_limit:
            self.on_durable([checkpoint])

    def check(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events]


def run(data: bytes, state: Path, target: FakeTarget | None = None, stop_after: int | None = None,
        rejects_path: Path | None = None, ledger: bool = True) -> tuple[FakeTarget, Counts]:
    target = target or FakeTarget()
    counts, stop = Counts(), threading.Event()
    progress = Progress(io.StringIO(), tty=False)
    if stop_after is not None:
        original = progress.tick
        def tick() -> None:
            original()
            if progress.lines >= stop_after:
                stop.set()
        progress.tick = tick  # type: ignore[method-assign]
    parser = EventParser(STORE, CFG.events, "events.", 6, "h")
    rejects = Rejects(str(rejects_path) if rejects_path else None)
    pipeline = Pipeline(parser, target, counts, rejects, progress, stop, str(state) if ledger else None, 300)
    pipeline.run_input(Input("in.json", io.BytesIO(data), len(data), lambda: 0, lambda: None))
    pipeline.finish()
    pipeline.close()
    rejects.close()
    return target, counts


@pytest.fixture
def sample(tmp_path: Path):  # type: ignore[no-untyped-def]
    exp = generate(str(tmp_path / "in.json"), 2600)
    return (tmp_path / "in.json").read_bytes(), exp


def test_every_valid_line_is_delivered_once_with_the_expected_ids(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    target, counts = run(data, tmp_path / "state")
    assert len(target.events) == exp.events == counts.accepted
    assert set(target.ids) == exp.ids and len(set(target.ids)) == exp.events
    assert counts.read == exp.lines and counts.blank == exp.blank
    assert counts.rejected == exp.rejected
    assert all(e.record["input"] == "replay" for e in target.events)
    decoder = Decoder(STORE)
    assert [decoder.decode(v)[1] for v in target.values] == [e.record for e in target.events]
    cost = sum(e.record["cost"] for e in target.events)
    assert cost == sum(exp.cost.values())


def test_rejects_file_has_each_bad_line_with_number_reason_and_text(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    run(data, tmp_path / "state", rejects_path=tmp_path / "rejects.json")
    rows = [json.loads(l) for l in (tmp_path / "rejects.json").read_text().splitlines()]
    assert {r["line"] for r in rows} == set(exp.rejects)
    lines = data.split(b"\n")
    for r in rows:
        assert r["text"].encode("utf-8", "surrogateescape") == lines[r["line"] - 1]
        assert r["file"] == "in.json" and r["reason"]


def test_over_long_line_is_rejected_with_its_size(tmp_path: Path) -> None:
    data = b'{"type":"click","time":1,"x":"' + b"a" * 400 + b'"}\n{"type":"click","time":1}\n'
    target, counts = run(data, tmp_path / "state", rejects_path=tmp_path / "r.json")
    assert len(target.events) == 1 and counts.rejected == {"line too long": 1}
    row = json.loads((tmp_path / "r.json").read_text())
    assert row["line"] == 1 and row["text"] is None and row["bytes"] == len(data.split(b"\n")[0])
    assert "over the limit of 300" in row["reason"]


def test_second_run_delivers_nothing_and_reports_the_same_rejects(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    run(data, tmp_path / "state")
    target, counts = run(data, tmp_path / "state")
    assert target.events == []
    assert counts.delivered_before == exp.events and counts.accepted == 0
    assert counts.rejected == exp.rejected


def test_interrupted_run_then_rerun_delivers_every_event_exactly_once(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    # Only the first two checkpoints are acknowledged before the "crash": the rest is lost in flight.
    first, _ = run(data, tmp_path / "state", target=FakeTarget(ack_limit=2))
    second, counts = run(data, tmp_path / "state")
    acked = {e.id for e in first.events[:counts.delivered_before]}
    assert counts.delivered_before > 0
    assert set(second.ids) | acked == exp.ids
    assert not set(second.ids) & acked
    assert len(second.ids) == len(set(second.ids)) == exp.events - counts.delivered_before


def test_stop_mid_input_records_what_was_acknowledged(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    first, c1 = run(data, tmp_path / "state", stop_after=2 * 1000 + 10)
    assert c1.read == 2 * 1000 + 10
    second, c2 = run(data, tmp_path / "state")
    assert c2.delivered_before == c1.accepted   # the stop marked its position and everything was acked
    assert sorted(first.ids + second.ids) == sorted(exp.ids)


def test_stop_while_checking_a_delivered_prefix_delivers_nothing(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    run(data, tmp_path / "state")
    target, counts = run(data, tmp_path / "state", stop_after=1500)
    assert target.events == [] and target.marked == []
    target, counts = run(data, tmp_path / "state")
    assert target.events == [] and counts.delivered_before == exp.events


def test_fixing_a_line_redelivers_from_the_checkpoint_before_it_with_unchanged_ids(tmp_path: Path) -> None:
    lines = [json.dumps({"type": "click", "time": 1_767_225_600 + i, "campaign_id": i % 3}).encode()
             for i in range(3000)]
    bad = list(lines)
    bad[2500] = b'{"type": "click", "time": "never"}'
    run(b"\n".join(bad) + b"\n", tmp_path / "state")
    target, counts = run(b"\n".join(lines) + b"\n", tmp_path / "state")
    first_run, _ = run(b"\n".join(bad) + b"\n", tmp_path / "other")
    assert counts.delivered_before == 2000 and len(target.events) == 1000
    # Every line but the fixed one keeps the id the first run gave it.
    assert set(target.ids) - set(first_run.ids) == {target.events[500].id}


def test_appended_lines_alone_are_delivered(tmp_path: Path) -> None:
    lines = [json.dumps({"type": "impression", "time": 1_767_225_600 + i}).encode() for i in range(2600)]
    run(b"\n".join(lines[:2000]) + b"\n", tmp_path / "state")
    target, counts = run(b"\n".join(lines) + b"\n", tmp_path / "state")
    assert counts.delivered_before == 2000 and len(target.events) == 600


def test_identical_id_less_lines_are_distinct_events_with_stable_ids(tmp_path: Path) -> None:
    line = b'{"type": "click", "time": 1767225600, "campaign_id": 1, "cost": "0.5"}'
    a, _ = run((line + b"\n") * 3, tmp_path / "s1")
    b, _ = run((line + b"\n") * 3, tmp_path / "s2")
    assert len(set(a.ids)) == 3 and a.ids == b.ids


def test_without_a_ledger_nothing_is_marked(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    target, counts = run(data, tmp_path / "state", ledger=False)
    assert target.marked == [] and counts.accepted == exp.events
    assert not (tmp_path / "state").exists()


def test_an_edited_input_fails_for_a_block_target_before_delivering_twice(tmp_path: Path) -> None:
    lines = [json.dumps({"type": "click", "time": 1_767_225_600 + i, "campaign_id": 1}).encode() for i in range(3000)]
    run(b"\n".join(lines) + b"\n", tmp_path / "state", target=FakeTarget(streaming=False))
    lines[1500] = b'{"type": "click", "time": 1767225600, "campaign_id": 2}'
    target = FakeTarget(streaming=False)
    with pytest.raises(ReplayFailed, match="differs from what an earlier replay delivered, at line 2000"):
        run(b"\n".join(lines) + b"\n", tmp_path / "state", target=target)
    assert target.events == []


def test_delivered_events_warm_the_target_and_resent_ones_keep_the_first_received_time(tmp_path: Path,
                                                                                       sample) -> None:  # type: ignore[no-untyped-def]
    data, exp = sample
    first, _ = run(data, tmp_path / "state", target=FakeTarget(ack_limit=2))
    second, counts = run(data, tmp_path / "state")
    assert len(second.warmed) == counts.delivered_before > 0
    assert second.warmed == [n for n in second.warmed if n <= 2000] and second.warmed == sorted(second.warmed)
    assert {e.record["received"] for e in first.events + second.events} == {first.events[0].record["received"]}


def test_a_stop_marks_mid_block_only_for_a_streaming_target(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    data, _ = sample
    block, _ = run(data, tmp_path / "s1", target=FakeTarget(streaming=False), stop_after=1500)
    stream, _ = run(data, tmp_path / "s2", target=FakeTarget(), stop_after=1500)
    assert [c.line for c in block.marked] == [1000]
    assert [c.line for c in stream.marked] == [1000, 1500]
    assert [(c.after, c.line) for c in stream.marked] == [(0, 1000), (1000, 1500)]
