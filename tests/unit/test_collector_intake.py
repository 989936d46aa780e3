"""The intake (validate, encode, append) and the line splitter: every bad line rejected with its
reason and counted, the good ones beside it taken, batches appended whole or refused whole."""

from __future__ import annotations

from pathlib import Path

from collector_support import good, line, make_intake, queued
from prometheus_client import REGISTRY

from eventd.roles.collector.intake import new_id_factory
from eventd.roles.collector.lines import LineSplitter, TooLong


def rejected_count(reason: str) -> float:
    return REGISTRY.get_sample_value("eventd_events_rejected_total", {"role": "collector", "reason": reason}) or 0.0


def test_bad_lines_are_rejected_with_reasons_and_good_ones_taken(tmp_path: Path) -> None:
    intake, q = make_intake(tmp_path)
    before = rejected_count("field:cost")
    lines = [
        good(0),
        b'{"type": "click", "time": 1767268800, "cost": -1}',
        b"{not json",
        b'{"type": "click", "time": 1767268800, "cost": "\xff"}',
        line(time=1767268800),
        line(type="Bad Type", time=1767268800),
        line(type="click", time="yesterday"),
        line(type="click", time=1767268800, cost="1e400"),
        b'{"type": "click", "time": 1767268800, "cost": NaN}',
        b'{"type": "click", "time": 1767268800, "cost": Infinity}',
        line(type="click", time=1767268800, cost="abc"),
        line(type="click", time=1767268800, cost=10**13),
        line(type="click", time=1767268800, campaign_id=2**63),
        b"[1, 2]",
        good(1),
    ]
    out = intake.ingest(lines, "tcp")
    assert (out.accepted, out.rejected, out.refused) == (2, 13, 0)
    errors = {e["line"]: e["error"] for e in out.errors}
    assert set(errors) == set(range(2, 15))
    assert errors[2] == "cost: money must not be negative, got -1"
    assert errors[3].startswith("not valid JSON")
    assert errors[4].startswith("invalid UTF-8")
    assert errors[5] == "type: missing"
    assert errors[6].startswith("type: 'Bad Type' is not an event type")
    assert errors[7] == "time: 'yesterday' is not ISO-8601"
    assert "out of range" in errors[8]
    assert errors[9].startswith("not valid JSON: NaN is not allowed")
    assert errors[10].startswith("not valid JSON: Infinity is not allowed")
    assert errors[11] == "cost: money must be a number, got 'abc'"
    assert "out of range" in errors[12]
    assert errors[13].startswith("campaign_id: 9223372036854775808 overflows a long")
    assert errors[14] == "expected a JSON object, got list"
    assert rejected_count("field:cost") == before + 4
    got = queued(q)
    assert [r["campaign_id"] for _, _, r in got] == [100, 101]
    assert all(r["cost"] == 1 and r["input"] == "tcp" and r["host"] == "web1" for _, _, r in got)
    assert [(t, k) for t, k, _ in got] == [("events.click", b"100"), ("events.click", b"101")]


def test_unknown_type_is_carried_generic_and_ids_are_assigned_or_kept(tmp_path: Path) -> None:
    intake, q = make_intake(tmp_path)
    out = intake.ingest([line(type="newthing", time=1767268800, cost=2.5, foo="bar"),
                         line(type="click", time=1767268800, id="given-id")], "http")
    assert out.accepted == 2
    (t1, _, r1), (_, _, r2) = queued(q)
    assert t1 == "events._generic" and r1["type"] == "newthing" and r1["cost"] == 2_500_000
    assert r1["extra"] == {"foo": "bar"} and len(r1["id"]) == 24
    assert r2["id"] == "given-id"


def test_errors_are_capped_but_all_counted(tmp_path: Path) -> None:
    intake, _ = make_intake(tmp_path, max_errors=3)
    out = intake.ingest([b"x"] * 10 + [good()], "http")
    assert (out.accepted, out.rejected, len(out.errors)) == (1, 10, 3)


def test_a_full_queue_refuses_the_batch_whole(tmp_path: Path) -> None:
    intake, q = make_intake(tmp_path, cap=1 << 17)
    while not intake.ingest([good(0)], "tcp").refused:
        pass
    end = q.next_seq
    out = intake.ingest([good(1), b"bad", good(2)], "tcp")
    assert (out.accepted, out.rejected, out.refused) == (0, 1, 2)
    assert "full" in out.refusal and out.answer()["refused"] == 2
    assert intake.full and q.next_seq == end
    q.acknowledge(end, force=True)
    assert not intake.full
    assert intake.ingest([good(3)], "tcp").accepted == 1


def test_blank_lines_are_ignored_and_too_long_lines_rejected(tmp_path: Path) -> None:
    intake, q = make_intake(tmp_path)
    out = intake.ingest([b"", b"  \r", TooLong(5_000_000), good()], "tcp", first_line=10)
    assert (out.accepted, out.rejected) == (1, 1)
    assert out.errors == [{"line": 12, "error": "line of 5000000 bytes is over the limit of 1048576"}]


def test_reproducible_ids_for_inputs_that_need_them(tmp_path: Path) -> None:
    intake, q = make_intake(tmp_path)
    intake.ingest([good(0), good(1)], "tail", 0, lambda n: f"line-{n}")
    assert [r["id"] for _, _, r in queued(q)] == ["line-0", "line-1"]


def test_assigned_ids_are_unique() -> None:
    a, b = new_id_factory(), new_id_factory()
    ids = {a() for _ in range(1000)} | {b() for _ in range(1000)}
    assert len(ids) == 2000


def test_line_splitter_keeps_lines_whole_across_chunks() -> None:
    s = LineSplitter(100)
    assert s.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert s.feed(b':2}') == []
    assert s.feed(b'\n\n{"c":3}\r\n') == [b'{"b":2}', b"", b'{"c":3}\r']
    assert s.feed(b'{"d":4}') == []
    assert s.finish() == [b'{"d":4}']
    assert s.finish() == []


def test_line_splitter_drops_over_long_lines_without_buffering_them() -> None:
    s = LineSplitter(10)
    assert s.feed(b"short\n" + b"x" * 8) == [b"short"]
    assert s.feed(b"y" * 50) == []
    assert s.pending == 0
    assert s.feed(b"zz\nok\n") == [TooLong(60), b"ok"]
    assert s.feed(b"q" * 30) == []
    assert s.finish() == [TooLong(30)]
