"""The command end to end with --dry-run (no services): exit codes, summary, rejects file."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import threading
from pathlib import Path

import pytest

from eventd.config import load_config
from eventd.replay.command import EXIT_FAILED, EXIT_OK, EXIT_REJECTED, replay
from eventd.replay.testdata import generate

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))


def run(files: list[str], rejects: Path | None = None, to: str = "kafka") -> int:
    args = argparse.Namespace(files=files, to=to, rejects=str(rejects) if rejects else None, dry_run=True)
    return replay(CFG, args, stop=threading.Event())


def summary(text: str) -> dict[str, str]:
    return {l.split(":")[0].strip(): l.split(":")[1].split()[0] for l in text.splitlines()[1:] if ":" in l}


def test_clean_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = generate(str(tmp_path / "ok.json"), 400, bad_every=10**9)
    assert run([str(tmp_path / "ok.json")]) == EXIT_OK
    figures = summary(capsys.readouterr().out)
    assert figures["accepted"] == str(exp.events) and figures["rejected"] == "0"


def test_bad_lines_exit_65_with_an_exact_rejects_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = generate(str(tmp_path / "in.json.gz"), 1500)
    assert run([str(tmp_path / "in.json.gz")], rejects=tmp_path / "rejects.json") == EXIT_REJECTED
    rows = [json.loads(l) for l in (tmp_path / "rejects.json").read_text().splitlines()]
    assert [r["line"] for r in rows] == sorted(exp.rejects)
    out = capsys.readouterr().out
    assert summary(out)["rejected"] == str(len(exp.rejects)) and summary(out)["accepted"] == f"{exp.events:,}"


def test_stdin_and_several_files_add_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    a = generate(str(tmp_path / "a.json"), 300, seed=1)
    b = generate(str(tmp_path / "b.json.gz"), 200, seed=2)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "a.json").read_bytes())))
    assert run([str(tmp_path / "a.json"), "-", str(tmp_path / "b.json.gz")]) == EXIT_REJECTED
    figures = summary(capsys.readouterr().out)
    assert figures["lines read"] == f"{2 * a.lines + b.lines:,}"
    assert figures["accepted"] == f"{2 * a.events + b.events:,}"


def test_unreadable_input_fails_before_anything_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate(str(tmp_path / "a.json"), 10)
    assert run([str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == EXIT_FAILED
    assert summary(capsys.readouterr().out)["lines read"] == "0"


def test_corrupt_gzip_fails(tmp_path: Path) -> None:
    data = gzip.compress(b'{"type": "click", "time": 1767225600}\n' * 50000)
    (tmp_path / "cut.json.gz").write_bytes(data[: len(data) // 2])
    assert run([str(tmp_path / "cut.json.gz")]) == EXIT_FAILED

