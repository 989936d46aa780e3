"""The fsync policy (group commit under ``always``) and the collector's config section."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from collector_support import REPO

from eventd.config import load_config
from eventd.errors import ConfigError
from eventd.roles.collector import syncer as syncer_mod
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.records import payload
from eventd.roles.collector.syncer import Syncer


def rec(i: int) -> bytes:
    return payload("t", b"k", b"v%d" % i)


@pytest.fixture
def queue(tmp_path: Path) -> DurableQueue:
    return DurableQueue.open(str(tmp_path), 4096, 1 << 20)


def test_always_releases_waiters_after_an_fsync_that_covers_them(queue: DurableQueue,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(syncer_mod.os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    s = Syncer(queue, "always", 10.0)
    s.start()
    done = threading.Event()
    end = queue.append([rec(0), rec(1)])
    s.when_synced(end, done.set)
    assert done.wait(5) and synced and s.synced >= end
    s.stop()


def test_one_fsync_serves_many_waiters(queue: DurableQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    gate = threading.Event()
    monkeypatch.setattr(syncer_mod.os, "fdatasync", lambda fd: (calls.append(fd), gate.wait(5)))
    s = Syncer(queue, "always", 10.0)
    s.start()
    released = []
    s.when_synced(queue.append([rec(0)]), lambda: released.append(0))
    time.sleep(0.1)                               # the first fsync is now in progress
    for i in range(1, 20):
        s.when_synced(queue.append([rec(i)]), lambda i=i: released.append(i))
    gate.set()
    deadline = time.monotonic() + 5
    while len(released) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(released) == list(range(20))
    assert len(calls) <= 3                        # 20 waiters, at most a few fsyncs
    s.stop()


def test_interval_syncs_by_itself_and_never_does_not_wait(queue: DurableQueue) -> None:
    s = Syncer(queue, "interval", 0.02)
    s.start()
    end = queue.append([rec(0)])
    deadline = time.monotonic() + 5
    while s.synced < end and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.synced >= end and not s.waits
    s.stop()
    n = Syncer(queue, "never", 0.1)
    called = []
    n.when_synced(queue.append([rec(1)]), lambda: called.append(1))
    assert called == [1]


def test_segments_rolled_are_synced_and_closed(queue: DurableQueue) -> None:
    s = Syncer(queue, "interval", 3600)
    for i in range(200):
        queue.append([rec(i) + b"x" * 100])
    _, fds, retired, _ = queue.sync_work()
    assert retired and set(retired) <= set(fds)
    for fd in retired:
        os.close(fd)
    s.sync()


# ------------------------------------------------------------------------------------------ config

def write_config(tmp_path: Path, collector: str) -> Path:
    text = (REPO / "conf" / "eventd.yaml").read_text()
    start = text.index("collector:\n")
    end = text.index("\nclickhouse_loader:")
    path = tmp_path / "eventd.yaml"
    path.write_text(text[:start] + collector + text[end:])
    (tmp_path / "schemas").symlink_to(REPO / "conf" / "schemas")
    return path


def test_sample_collector_section_defaults() -> None:
    cfg = load_config(str(REPO / "conf" / "eventd.yaml")).collector
    assert (cfg.http.host, cfg.http.port, cfg.unix.path, cfg.unix.mode) == ("127.0.0.1", 8787,
                                                                          "/run/eventd/collector.sock", 0o660)
    assert cfg.queue.fsync == "interval" and cfg.queue.slot_dir(2).endswith("queue/slot-2")
    assert not cfg.tcp.enabled and not cfg.udp.enabled and not cfg.tail.enabled


@pytest.mark.parametrize("section, message", [
    ("collector:\n  queue: {fsync: sometimes}\n", "collector.queue.fsync: 'sometimes' is not allowed"),
    ("collector:\n  queue: {segment_size: 1MiB, max_size: 1MiB}\n", "must be at least twice segment_size"),
    ("collector:\n  tail: {enabled: true}\n", "collector.tail.paths: tail is enabled but no paths"),
    ("collector:\n  tail: {start_at: middle}\n", "collector.tail.start_at"),
    ("collector:\n  unix: {path: /" + "x" * 120 + "}\n", "at most 107 bytes"),
    ("collector:\n  max_body_size: 8GiB\n", "at most half of queue.max_size"),
    ("collector:\n  http: {listen: 8787}\n", "collector.http.listen: 8787 is not an address"),
    ("collector:\n  drain_timeout: 10\n", "collector.drain_timeout: 10 is not a duration"),
    ("collector:\n  htpp: {}\n", "collector.htpp: unknown key"),
])
def test_broken_collector_sections(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(write_config(tmp_path, section)))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "eventd.yaml") + ":")
