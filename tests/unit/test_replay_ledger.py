"""Resume points: recorded checkpoints, matching by offset and digest, torn lines, locking,
and the resume walk (hold / delivered / new)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventd.replay.ledger import Checkpoint, Ledger, LedgerError, Resumer, Step, stream_key


def test_records_survive_reopening_and_torn_lines_are_ignored(tmp_path: Path) -> None:
    ledger = Ledger.open(str(tmp_path), "k", 1000)
    ledger.record([Checkpoint(ledger, 10, 2, "a" * 32), Checkpoint(ledger, 25, 5, "b" * 32)])
    ledger.close()
    with open(tmp_path / "k.ckpt", "a") as fh:
        fh.write("v1 40 7 cccc")        # torn by a power loss
    again = Ledger.open(str(tmp_path), "k", 1000)
    assert again.matches(10, "a" * 32) and again.matches(25, "b" * 32)
    assert not again.matches(10, "b" * 32) and again.next_after(25) is None
    assert again.next_after(0) == 10 and again.next_after(10) == 25


def test_a_second_replay_of_the_same_input_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    first = Ledger.open(str(tmp_path), "k", 1000)
    with pytest.raises(LedgerError, match="being replayed"):
        Ledger.open(str(tmp_path), "k", 1000)
    first.close()
    Ledger.open(str(tmp_path), "k", 1000).close()


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(LedgerError, match="cannot keep resume points"):
        Ledger.open(str(tmp_path / "file" / "sub"), "k", 1000)


def test_stream_key_depends_on_content_only() -> None:
    assert stream_key(b"abc") == stream_key(b"abc") != stream_key(b"abd")


def resumer_with(tmp_path: Path, points: list[tuple[int, str]]) -> Resumer:
    ledger = Ledger.open(str(tmp_path), "k", 1000)
    ledger.record([Checkpoint(ledger, off, 0, dig) for off, dig in points])
    return Resumer(ledger)


def test_walk_holds_until_a_matching_checkpoint_then_goes_new_past_the_last(tmp_path: Path) -> None:
    r = resumer_with(tmp_path, [(10, "a" * 32), (20, "b" * 32)])
    assert r.step(4, lambda: "x") is Step.HOLD
    assert r.step(10, lambda: "a" * 32) is Step.DELIVERED
    assert r.step(20, lambda: "b" * 32) is Step.DELIVERED
    assert r.active
    assert r.step(30, lambda: "c" * 32) is Step.NEW and not r.active


def test_walk_reports_changed_content_on_a_digest_mismatch(tmp_path: Path) -> None:
    r = resumer_with(tmp_path, [(10, "a" * 32), (20, "b" * 32)])
    assert r.step(10, lambda: "f" * 32) is Step.CHANGED and not r.active


def test_walk_reports_changed_content_when_a_line_crosses_a_checkpoint(tmp_path: Path) -> None:
    r = resumer_with(tmp_path, [(10, "a" * 32)])
    assert r.step(12, lambda: "a" * 32) is Step.CHANGED


def test_received_time_is_kept_from_the_first_run(tmp_path: Path) -> None:
    first = Ledger.open(str(tmp_path), "k", 1111)
    first.close()
    again = Ledger.open(str(tmp_path), "k", 2222)
    assert first.received_ms == again.received_ms == 1111


def test_branches_of_inputs_sharing_a_head_live_side_by_side(tmp_path: Path) -> None:
    r = resumer_with(tmp_path, [(10, "a" * 32), (10, "e" * 32)])
    assert r.step(10, lambda: "e" * 32) is Step.DELIVERED


def test_empty_ledger_means_no_walk(tmp_path: Path) -> None:
    assert not Resumer(Ledger.open(str(tmp_path), "k", 1000)).active
