"""The uploader's sink inside the real consumer loop, with an in-memory HDFS and the fake
consumer: flush ranges tile each partition, each flush is recorded in Kafka before its files
are placed and committed after, a "kill" at any HDFS call followed by a restart gives exactly
once, rename answered false, backpressure, revoked partitions. The real services are in
tests/integration/test_hdfs_*.py."""

from __future__ import annotations

import collections
import contextlib
import io
import posixpath
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import avro.datafile
import avro.io
import pytest

from eventd.config.common import DeadLetterConfig, RoleCommon
from eventd.config.hdfs import HdfsUploaderConfig
from eventd.event.codec import encode
from eventd.event.schemas import SchemaStore
from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.types import TopicPartition
from eventd.roles.hdfs_uploader import recovery
from eventd.roles.hdfs_uploader.layout import parse_final
from eventd.roles.hdfs_uploader.publish import Publisher
from eventd.roles.hdfs_uploader.records import RecordReader
from eventd.roles.hdfs_uploader.sink import HdfsSink
from eventd.roles.hdfs_uploader.staging import Staging
from eventd.roles.hdfs_uploader.webhdfs import HdfsRefused, HdfsUnavailable
from fake_kafka import FakeConsumer, FakeProducer

STORE = SchemaStore.load(str(Path(__file__).resolve().parents[2] / "conf" / "schemas"))
BASE = "/archive"
HOUR = 3_600_000
T0 = 1_795_000_000_000 // HOUR * HOUR


class Killed(BaseException):
    """Stands for kill -9: escapes every handler."""


class FakeHdfs:
    """The WebHdfs calls the publisher makes, on a dict. ``fail(op)`` decides per call:
    return None to go on, or raise."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {"/", BASE}
        self.calls: list[tuple[str, str]] = []
        self.fail: Callable[[str, str], None] = lambda op, path: None
        self.rename_result: Callable[[str, str], bool | None] = lambda src, dst: None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def deadline(self, until: float) -> Iterator[None]:
        yield

    def _call(self, op: str, path: str) -> None:
        with self._lock:
            self.calls.append((op, path))
        self.fail(op, path)

    def status(self, path: str) -> dict | None:
        self._call("status", path)
        if path in self.files:
            return {"type": "FILE", "length": len(self.files[path])}
        return {"type": "DIRECTORY"} if path in self.dirs else None

    def list(self, path: str) -> list[dict]:
        self._call("list", path)
        return [{"pathSuffix": posixpath.basename(p), "type": "FILE"}
                for p in list(self.files) if posixpath.dirname(p) == path]

    def mkdirs(self, path: str) -> None:
        self._call("mkdirs", path)
        while path not in self.dirs:
            self.dirs.add(path)
            path = posixpath.dirname(path)

    def rename(self, src: str, dst: str) -> bool:
        self._call("rename", src)
        forced = self.rename_result(src, dst)
        if forced is not None:
            return forced
        with self._lock:
            if src not in self.files or dst in self.files or posixpath.dirname(dst) not in self.dirs:
                return False
            self.files[dst] = self.files.pop(src)
        return True

    def delete(self, path: str, recursive: bool = False) -> bool:
        self._call("delete", path)
        return self.files.pop(path, None) is not None

    def create(self, path: str, chunks: Iterable[bytes], length: int, overwrite: bool = True) -> None:
        data = b"".join(chunks)
        assert len(data) == length
        self.mkdirs(posixpath.dirname(path))
        self.files[path] = data[:length // 2]     # a failure (or kill) now leaves half a file
        self._call("create", path)
        self.files[path] = data

    # -- checks ------------------------------------------------------------------------------
    def final(self) -> dict[str, list[dict]]:
        return {p: list(avro.datafile.DataFileReader(io.BytesIO(d), avro.io.DatumReader()))
                for p, d in self.files.items() if "/_tmp/" not in p}

    def tmp(self) -> list[str]:
        return [p for p in self.files if "/_tmp/" in p]


def config(**over: Any) -> HdfsUploaderConfig:
    values = dict(role=RoleCommon(True, 1, None), namenode_host="x", namenode_port=1, user="u", base_dir=BASE,
                  staging_dir="unused", staging_max_size=1 << 30, codec="deflate", roll_size=4096, roll_age=3600.0,
                  block_size=1024, verify_records=True, upload_parallelism=3, timeout=1.0, min_upload_rate=1 << 20,
                  retry_backoff=0.01,
                  retry_backoff_max=0.02, group_id="g", duplicate_id_window=1000,
                  dead_letter=DeadLetterConfig(0.5, 1000))
    values.update(over)
    return HdfsUploaderConfig(**values)   # type: ignore[arg-type]


TOPICS = {"impression": "events.impression", "click": "events.click"}
TPS = [TopicPartition(t, p) for t in TOPICS.values() for p in range(2)]


def make_logs(n: int, seed: int = 1, bad_every: int = 0) -> tuple[dict[TopicPartition, list[bytes]], dict[str, int]]:
    """Events over three hours (and a late one now and then) spread over four partitions."""
    rnd = random.Random(seed)
    logs: dict[TopicPartition, list[bytes]] = {tp: [] for tp in TPS}
    expected: dict[str, int] = {}
    for i in range(n):
        tp = rnd.choice(TPS)
        if bad_every and i % bad_every == 0:
            logs[tp].append(b"not avro %d" % i)
            continue
        etype = tp.topic.split(".")[1]
        cost = rnd.randrange(0, 10_000)
        t = T0 + rnd.randrange(0, 3 * HOUR) - (48 * HOUR if rnd.random() < 0.03 else 0)
        rec = {"id": f"e{i}", "type": etype, "time": t, "received": t, "host": "h", "input": "test",
               "schema_version": 1, "campaign_id": 1, "cost": cost, "revenue": 1, "extra": {}}
        logs[tp].append(encode(STORE.latest[etype], rec))
        expected[f"e{i}"] = cost
    return logs, expected


class Run:
    """One "process": staging, sink, loop over a consumer; runs in a thread until stopped."""

    def __init__(self, tmp: Path, hdfs: FakeHdfs, consumer: FakeConsumer, cfg: HdfsUploaderConfig,
                 name: str = "p") -> None:
        self.consumer, self.hdfs = consumer, hdfs
        reader = RecordReader(STORE, cfg.verify_records, lambda family: f"events.{family}")
        self.staging = Staging(str(tmp / name), cfg.codec, cfg.block_size, "test")
        self.sink = HdfsSink(cfg, reader, self.staging, Publisher(hdfs, BASE), "test")  # type: ignore[arg-type]
        self.producer = FakeProducer()
        settings = LoopSettings("test", list(TOPICS.values()), max_items=50, max_age=0.01, poll_timeout=0.01,
                                backoff_initial=0.01, backoff_max=0.02, drain_timeout=2)
        self.loop = ConsumerLoop(settings, consumer, self.sink, DeadLetter(self.producer, "dlq", "test"),  # type: ignore[arg-type]
                                 InvalidLimit(cfg.dead_letter))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run(self.stop)
        except BaseException as exc:   # noqa: B902 - Killed included: the test inspects it
            self.error = exc

    def until(self, condition: Callable[[], bool], timeout: float = 20) -> "Run":
        self.thread.start()
        end = time.monotonic() + timeout
        while not condition() and self.thread.is_alive() and time.monotonic() < end:
            time.sleep(0.01)
        self.stop.set()
        self.thread.join(10)
        return self


def done(consumer: FakeConsumer, logs: dict[TopicPartition, list[bytes]]) -> Callable[[], bool]:
    def check() -> bool:
        c = consumer.committed_offsets
        return all(not v or (c.get(tp) is not None and c[tp].offset == len(v) and not c[tp].metadata)
                   for tp, v in logs.items())
    return check


def _records(values: list[bytes]) -> list[dict]:
    from eventd.event.codec import Decoder
    return [Decoder(STORE).decode(v)[1] for v in values]


def check_exactly_once(hdfs: FakeHdfs, logs: dict[TopicPartition, list[bytes]], expected: dict[str, int]) -> None:
    files = hdfs.final()
    ids = collections.Counter(r["id"] for recs in files.values() for r in recs)
    assert [i for i, c in ids.items() if c > 1] == []
    assert set(ids) == set(expected)
    assert sum(r["cost"] for recs in files.values() for r in recs) == sum(expected.values())
    assert hdfs.tmp() == []
    ranges = collections.defaultdict(set)
    for path, recs in files.items():
        name = parse_final(posixpath.basename(path))
        assert name is not None
        ranges[TopicPartition(name.topic, name.partition)].add((name.first, name.last))
        for r in recs:
            assert f"/type={r['type']}/" in path
    for tp in logs:
        nxt = 0
        for first, last in sorted(ranges[tp]):
            assert first == nxt, f"{tp}: {first}..{last} does not follow {nxt - 1}"
            nxt = last + 1


def test_every_record_placed_once_in_tiling_ranges(tmp_path: Path) -> None:
    logs, expected = make_logs(600, bad_every=50)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    run = Run(tmp_path, hdfs, consumer, config()).until(done(consumer, logs))
    assert run.error is None
    check_exactly_once(hdfs, logs, expected)
    assert len(run.producer.sent) == 12          # the dead letters
    assert run.staging.bytes == 0 and list((tmp_path / "p").iterdir()) == []


def test_each_flush_is_recorded_before_its_files_and_committed_after(tmp_path: Path) -> None:
    logs, _ = make_logs(300)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    Run(tmp_path, hdfs, consumer, config()).until(done(consumer, logs))
    for tp in TPS:
        commits = [c[tp] for c in consumer.commits if tp in c]
        recorded = [c for c in commits if c.metadata]
        assert recorded, "a flush with files is recorded first"
        for rec in recorded:
            end = recovery.resume(rec).flush_end
            assert end is not None
            # the next plain commit after the record is exactly the end of that flush + 1
            after = commits[commits.index(rec) + 1:]
            assert next(c.offset for c in after if not c.metadata or c.offset > rec.offset) == end + 1


@pytest.mark.parametrize("kills", [
    [("create", 1)], [("create", 7)], [("rename", 1)], [("rename", 5)], [("mkdirs", 3)],
    # killed again while recovering: checking what is in place, deleting stale temporaries
    [("rename", 3), ("status", 1)], [("create", 4), ("delete", 1)], [("rename", 2), ("rename", 2), ("create", 3)],
])
def test_killed_at_any_hdfs_call_then_restarted_exactly_once(tmp_path: Path, kills: list) -> None:
    logs, expected = make_logs(500, seed=len(kills))
    hdfs = kill_then_finish(tmp_path, logs, kills)
    check_exactly_once(hdfs, logs, expected)


def kill_then_finish(tmp_path: Path, logs: dict[TopicPartition, list[bytes]], kills: list) -> FakeHdfs:
    """One process per ``(call, n)`` of ``kills``, each killed at the n-th HDFS ``call``; the next
    starts from what the last one committed; a last process runs until everything is committed."""
    hdfs = FakeHdfs()
    committed: dict = {}
    for i, (op, nth) in enumerate(kills):
        counter: collections.Counter = collections.Counter()

        def kill(o: str, path: str, op: str = op, nth: int = nth, counter: collections.Counter = counter) -> None:
            counter[o] += 1
            if o == op and counter[o] == nth:
                raise Killed(f"{o} {path}")
        hdfs.fail = kill
        consumer = FakeConsumer(logs, committed=committed)
        # one upload at a time, so a kill can land between two files of one flush
        run = Run(tmp_path, hdfs, consumer, config(upload_parallelism=1), f"p{i}").until(done(consumer, logs))
        assert isinstance(run.error, Killed), f"run {i} was not killed at {op} #{nth}"
        committed = dict(consumer.committed_offsets)
    hdfs.fail = lambda o, p: None
    consumer = FakeConsumer(logs, committed=committed)
    run = Run(tmp_path, hdfs, consumer, config(), "final").until(done(consumer, logs))
    assert run.error is None
    return hdfs


def test_rename_false_with_the_file_in_place_counts_as_placed(tmp_path: Path) -> None:
    logs, expected = make_logs(200)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    answered = []

    def lost_answer(src: str, dst: str) -> bool | None:
        if not answered:   # the rename happens, but we are told false (e.g. a retried request)
            answered.append(dst)
            hdfs.files[dst] = hdfs.files.pop(src)
            hdfs.files[src] = b"copy"
            return False
        return None
    hdfs.rename_result = lost_answer
    Run(tmp_path, hdfs, consumer, config()).until(done(consumer, logs))
    check_exactly_once(hdfs, logs, expected)


def test_rename_false_without_the_file_is_retried(tmp_path: Path) -> None:
    logs, expected = make_logs(200)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    refusals = []
    hdfs.rename_result = lambda src, dst: False if len(refusals) < 3 and not refusals.append(1) else None
    Run(tmp_path, hdfs, consumer, config()).until(done(consumer, logs))
    assert len(refusals) == 3
    check_exactly_once(hdfs, logs, expected)


def test_staging_full_pauses_consumption_until_hdfs_is_back(tmp_path: Path) -> None:
    logs, expected = make_logs(800)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    down = threading.Event()
    down.set()

    def unavailable(op: str, path: str) -> None:
        if down.is_set():
            raise HdfsUnavailable(f"{op}: NameNode down")
    hdfs.fail = unavailable
    paused_seen = []

    def watch(c: FakeConsumer) -> None:
        if c.paused:
            paused_seen.append(sum(len(logs[tp]) - pos for tp, pos in c.offsets.items()))
            if len(paused_seen) > 20:
                down.clear()
    consumer.on_poll = watch
    run = Run(tmp_path, hdfs, consumer, config(staging_max_size=8192, roll_size=2048))
    run.until(done(consumer, logs))
    assert paused_seen and paused_seen[0] > 0, "consumption paused with messages still unread"
    assert run.error is None
    check_exactly_once(hdfs, logs, expected)


def test_refusal_stops_the_role(tmp_path: Path) -> None:
    logs, _ = make_logs(100)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)

    def refuse(op: str, path: str) -> None:
        if op == "create":
            raise HdfsRefused("AccessControlException: Permission denied")
    hdfs.fail = refuse
    run = Run(tmp_path, hdfs, consumer, config()).until(lambda: False, timeout=10)
    assert "Permission denied" in str(run.error)
    # only the flushes' records were committed (offset = their first offset, 0), nothing past them
    assert all(c.offset == 0 and c.metadata for c in consumer.committed_offsets.values())


def test_a_quiet_stream_is_placed_by_age(tmp_path: Path) -> None:
    logs, expected = make_logs(120)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    run = Run(tmp_path, hdfs, consumer, config(roll_age=0.2, roll_size=1 << 30))
    run.until(done(consumer, logs), timeout=10)
    check_exactly_once(hdfs, logs, expected)


def test_stopping_places_what_is_staged(tmp_path: Path) -> None:
    """roll_age of an hour: nothing would be placed for a long time; stop places it all."""
    logs, expected = make_logs(120)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    run = Run(tmp_path, hdfs, consumer, config(roll_age=3600.0, roll_size=1 << 30))
    run.until(lambda: all(consumer.offsets.get(tp) == len(v) for tp, v in logs.items()))
    assert run.error is None
    assert done(consumer, logs)()
    check_exactly_once(hdfs, logs, expected)


def test_revoked_partitions_are_forgotten(tmp_path: Path) -> None:
    logs, _ = make_logs(100)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    run = Run(tmp_path, hdfs, consumer, config())
    run.sink.start(TPS, {tp: None for tp in TPS})
    from eventd.kafka.batch import Batch
    batch: Batch = Batch()
    for i, value in enumerate(logs[TPS[0]][:10]):
        from eventd.kafka.batch import Message
        batch.add(TPS[0], i, run.sink.transform(Message(TPS[0].topic, 0, i, None, value, 0)))
    consumer.offsets = {tp: 0 for tp in TPS}
    run.sink.write(batch, run.loop)
    assert run.staging.bytes > 0
    consumer.offsets = {tp: 0 for tp in TPS[1:]}       # TPS[0] revoked
    assert run.sink.tick(run.loop, None) == {}
    assert TPS[0] not in run.sink.parts and run.staging.bytes == 0


def test_recorded_flush_is_regenerated_with_the_same_boundary(tmp_path: Path) -> None:
    """A committed record "flush 0..K" makes the first flush end exactly at K whatever the
    roll settings, so its files get the names already in HDFS."""
    logs, expected = make_logs(300)
    tp = TPS[0]
    k = len(logs[tp]) // 3
    committed = {tp: recovery.record(0, k)}
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs, committed=committed)
    Run(tmp_path, hdfs, consumer, config(roll_size=1 << 30, roll_age=0.05)).until(done(consumer, logs))
    names = {parse_final(posixpath.basename(p)) for p in hdfs.final()}
    assert any(n and n.topic == tp.topic and n.partition == tp.partition and (n.first, n.last) == (0, k)
               for n in names)
    check_exactly_once(hdfs, logs, expected)


def test_staging_write_error_is_not_silent(tmp_path: Path) -> None:
    logs, _ = make_logs(50)
    hdfs, consumer = FakeHdfs(), FakeConsumer(logs)
    run = Run(tmp_path, hdfs, consumer, config())
    import shutil
    shutil.rmtree(tmp_path / "p")
    (tmp_path / "p").write_text("not a directory")
    run.until(lambda: False, timeout=5)
    assert "staging" in str(run.error)
    assert not any(c.offset for c in consumer.committed_offsets.values())


def test_a_failed_flush_keeps_its_record_when_an_earlier_one_is_committed(tmp_path: Path) -> None:
    """Flush 1 placed, flush 2 recorded then failing: the commit of flush 1's end must not wipe
    flush 2's record, or a crash now would regenerate flush 2 with other boundaries."""
    many, _ = make_logs(400, seed=9)
    logs = {tp: many[tp] if tp == TPS[0] else [] for tp in TPS}     # one partition: its flushes in a row
    expected = {r["id"]: r["cost"] for r in _records(logs[TPS[0]])}
    hdfs = FakeHdfs()
    counter: collections.Counter = collections.Counter()

    def fail(op: str, path: str) -> None:
        if op == "create" and "+0000000000+" not in path:     # a file of the second flush
            counter[op] += 1
            raise HdfsUnavailable("DataNode leg timed out") if counter[op] == 1 else Killed("retrying")
    hdfs.fail = fail
    first = FakeConsumer(logs)
    run = Run(tmp_path, hdfs, first, config(upload_parallelism=1, roll_size=1024, retry_backoff=0.2),
              "p1").until(done(first, logs))
    assert counter["create"] == 2
    assert first.committed_offsets[TPS[0]].metadata, "the second flush's record is still committed"
    assert isinstance(run.error, Killed)
    hdfs.fail = lambda o, p: None
    second = FakeConsumer(logs, committed=dict(first.committed_offsets))
    Run(tmp_path, hdfs, second, config(roll_size=1 << 20, roll_age=0.05), "p2").until(done(second, logs))
    check_exactly_once(hdfs, logs, expected)


def with_resends(logs: dict[TopicPartition, list[bytes]], every: int) -> dict[TopicPartition, list[bytes]]:
    """A collector's resends: every ``every``-th message again, a few messages later, same partition."""
    out = {}
    for tp, values in logs.items():
        out[tp] = list(values)
        for i in range(0, len(values), every):
            out[tp].insert(min(len(out[tp]), i + i // every + 5), values[i])
    return out


@pytest.mark.parametrize("kills", [[], [("create", 3)], [("rename", 4), ("create", 2)]])
def test_collector_resends_are_archived_once_through_kills(tmp_path: Path, kills: list) -> None:
    logs, expected = make_logs(400, seed=7)
    logs = with_resends(logs, 9)
    hdfs = kill_then_finish(tmp_path, logs, kills)
    check_exactly_once(hdfs, logs, expected)
