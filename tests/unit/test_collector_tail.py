"""The file-tail input: new lines, rename and copytruncate rotation, positions across restarts,
reproducible ids for lines read again, over-long lines, and a full queue."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from collector_support import good, make_intake, queued

from eventd.config.collector import TailInput
from eventd.roles.collector.syncer import Syncer
from eventd.roles.collector.tail import Tailer


class Rig:
    def __init__(self, tmp: Path, start_at: str = "beginning", max_line: int = 1 << 20, cap: int = 1 << 24) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.cfg = TailInput(True, (str(self.logs / "*.log"),), 0.01, start_at, str(tmp / "pos.json"))
        self.intake, self.queue = make_intake(tmp / "q", cap=cap)
        self.syncer = Syncer(self.queue, "never", 0.1)
        self.max_line = max_line
        self.tailer = self.new_tailer()

    def new_tailer(self) -> Tailer:
        return Tailer(self.cfg, self.intake, self.syncer, "web1", self.max_line)

    def poll(self, times: int = 1) -> None:
        for _ in range(times):
            asyncio.run(self.tailer.poll())
        self.tailer.save()

    def restart(self) -> None:
        self.tailer.close()
        self.tailer = self.new_tailer()

    def events(self) -> list[dict]:
        return [r for _, _, r in queued(self.queue)]

    def campaigns(self) -> list[int]:
        return [r["campaign_id"] for r in self.events()]


def write(path: Path, *lines: bytes, partial: bytes = b"") -> None:
    with open(path, "ab") as fh:
        fh.write(b"".join(x + b"\n" for x in lines) + partial)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_new_lines_are_taken_and_a_partial_last_line_waits(rig: Rig) -> None:
    app = rig.logs / "app.log"
    whole = good(2)
    write(app, good(0), good(1), partial=whole[:10])
    rig.poll()
    assert rig.campaigns() == [100, 101]
    write(app, whole[10:], good(3))
    rig.poll()
    assert rig.campaigns() == [100, 101, 102, 103]
    assert {r["input"] for r in rig.events()} == {"tail"}


def test_rename_rotation_reads_the_old_file_to_its_end_and_the_new_one_from_the_start(rig: Rig) -> None:
    app = rig.logs / "app.log"
    write(app, good(0))
    rig.poll()
    write(app, good(1))                      # written just before rotation, not read yet
    os.rename(app, rig.logs / "app.log.1")   # no longer matched by *.log
    write(app, good(2))
    rig.poll(5)
    assert sorted(rig.campaigns()) == [100, 101, 102]
    assert len(rig.tailer.files) == 1        # the rotated file was let go


def test_copytruncate_starts_again_from_the_beginning(rig: Rig) -> None:
    app = rig.logs / "app.log"
    write(app, good(0), good(1))
    rig.poll()
    shutil.copy(app, rig.logs / "app.log.1.bak")
    os.truncate(app, 0)
    write(app, good(2))
    rig.poll()
    assert rig.campaigns() == [100, 101, 102]


def test_truncated_and_regrown_past_the_position_is_noticed(rig: Rig) -> None:
    app = rig.logs / "app.log"
    write(app, good(0))
    rig.poll()
    os.truncate(app, 0)
    write(app, good(5), good(6), good(7))     # longer than before: only the changed head shows it
    rig.poll()
    assert rig.campaigns() == [100, 105, 106, 107]


def test_positions_survive_a_restart(rig: Rig) -> None:
    app = rig.logs / "app.log"
    write(app, good(0), good(1))
    rig.poll()
    rig.restart()
    write(app, good(2))
    rig.poll()
    assert rig.campaigns() == [100, 101, 102]


def test_lines_read_again_after_a_crash_get_the_same_ids(rig: Rig) -> None:
    app = rig.logs / "app.log"
    write(app, good(0), good(1, id="own-id"))
    rig.poll()
    first = [r["id"] for r in rig.events()]
    os.unlink(rig.cfg.positions)             # the crash came before the position was saved
    rig.restart()
    rig.poll()
    again = [r["id"] for r in rig.events()]
    assert again == first + first and first[1] == "own-id" and len(first[0]) == 32


def test_identical_lines_get_different_ids(rig: Rig) -> None:
    write(rig.logs / "app.log", good(0), good(0))
    rig.poll()
    ids = [r["id"] for r in rig.events()]
    assert len(set(ids)) == 2


def test_start_at_end_skips_what_existed_at_the_first_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "old.log", good(0), partial=b'{"type":')
    rig = Rig(tmp_path, start_at="end")
    rig.poll()
    assert rig.campaigns() == []
    write(logs / "old.log", b'"click","time":1767268800,"campaign_id":9}', good(1))
    write(logs / "new.log", good(2))
    rig.poll()
    assert sorted(rig.campaigns()) == [9, 101, 102]


def test_over_long_line_is_rejected_and_the_next_lines_taken(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_line=300)
    write(rig.logs / "app.log", good(0), b'{"type":"click","x":"' + b"y" * 1000 + b'"}', good(1))
    rig.poll()
    assert rig.campaigns() == [100, 101]


def test_a_full_queue_holds_the_file_position(tmp_path: Path) -> None:
    rig = Rig(tmp_path, cap=1 << 17)
    while rig.intake.ingest([good(0)], "http").accepted:
        pass
    before = rig.queue.next_seq
    write(rig.logs / "app.log", good(1), good(2))
    rig.poll()
    assert rig.queue.next_seq == before
    rig.queue.acknowledge(before, force=True)
    rig.poll()
    assert rig.campaigns()[-2:] == [101, 102]


def test_position_is_saved_only_once_the_events_are_on_disk(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.syncer = Syncer(rig.queue, "interval", 3600)   # never syncs by itself in this test
    rig.tailer = rig.new_tailer()
    write(rig.logs / "app.log", good(0))
    rig.poll()
    assert '"offset": 0' in Path(rig.cfg.positions).read_text()
    rig.syncer.sync()
    rig.tailer.save()
    assert f'"offset": {len(good(0)) + 1}' in Path(rig.cfg.positions).read_text()

