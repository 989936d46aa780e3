"""Reading legacy inputs: plain, gzip and stdin; line numbers, terminators, over-long lines,
and the offset/digest the ledger relies on."""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
from pathlib import Path

import pytest

from eventd.replay.reader import HEAD_SIZE, LineReader, open_input


def read_all(data: bytes, max_line_size: int = 100) -> tuple[list, LineReader]:
    reader = LineReader(io.BytesIO(data), max_line_size)
    return list(reader), reader


def test_numbers_lines_from_one_and_strips_lf_and_crlf() -> None:
    lines, reader = read_all(b'{"a":1}\r\n{"b":2}\n\n{"c":3}')
    assert [(l.number, l.data) for l in lines] == [(1, b'{"a":1}'), (2, b'{"b":2}'), (3, b""), (4, b'{"c":3}')]
    assert reader.lines == 4


def test_offset_and_digest_cover_every_byte_read() -> None:
    data = b"one\r\ntwo\n\nthree"
    _, reader = read_all(data)
    assert reader.offset == len(data)
    assert reader.prefix_digest() == hashlib.blake2b(data, digest_size=16).hexdigest()


def test_prefix_digest_is_of_the_bytes_so_far() -> None:
    reader = LineReader(io.BytesIO(b"aa\nbb\ncc\n"), 100)
    it = iter(reader)
    next(it), next(it)
    assert reader.offset == 6
    assert reader.prefix_digest() == hashlib.blake2b(b"aa\nbb\n", digest_size=16).hexdigest()


def test_over_long_line_is_not_kept_and_reading_goes_on() -> None:
    long = b"x" * 5000
    lines, reader = read_all(b"ok\n" + long + b"\r\nnext\n" + b"y" * 11 + b"\n", max_line_size=10)
    assert [(l.number, l.data, l.size) for l in lines] == [
        (1, b"ok", 2), (2, None, 5000), (3, b"next", 4), (4, None, 11)]
    assert reader.offset == 3 + 5002 + 5 + 12


def test_line_exactly_at_the_limit_is_kept() -> None:
    lines, _ = read_all(b"x" * 10 + b"\r\n" + b"y" * 10, max_line_size=10)
    assert [l.data for l in lines] == [b"x" * 10, b"y" * 10]


def test_head_is_the_first_bytes_and_lines_span_it() -> None:
    line = b"z" * 1000 + b"\n"
    data = line * (2 * HEAD_SIZE // len(line))
    lines, reader = read_all(data, max_line_size=2000)
    assert reader.head == data[:HEAD_SIZE]
    assert all(l.data == b"z" * 1000 for l in lines) and len(lines) == len(data) // len(line)


def test_gzip_and_plain_give_the_same_lines_and_digest(tmp_path: Path) -> None:
    data = b"".join(b'{"n":%d}\n' % i for i in range(5000))
    (tmp_path / "a.json").write_bytes(data)
    with gzip.open(tmp_path / "a.json.gz", "wb") as fh:
        fh.write(data)
    results = []
    for name in ("a.json", "a.json.gz"):
        inp = open_input(str(tmp_path / name))
        reader = LineReader(inp.stream, 100)
        results.append(([l.data for l in reader], reader.prefix_digest(), reader.head))
        assert inp.position() == inp.size
        inp.close()
    assert results[0] == results[1]


def test_stdin_is_read_when_path_is_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"a\nb\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    inp = open_input("-")
    assert inp.name == "<stdin>" and inp.size is None
    assert [l.data for l in LineReader(inp.stream, 10)] == [b"a", b"b"]


def test_truncated_gzip_raises(tmp_path: Path) -> None:
    data = gzip.compress(b'{"n":1}\n' * 20000)
    (tmp_path / "cut.json.gz").write_bytes(data[: len(data) // 2])
    inp = open_input(str(tmp_path / "cut.json.gz"))
    with pytest.raises(EOFError):
        list(LineReader(inp.stream, 100))
