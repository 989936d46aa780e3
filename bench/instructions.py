#!/usr/bin/env python3
"""bench/instructions.py — machine instructions per event of eventd's per-event paths, counted by
valgrind: the same count on every run, where CPU time on this shared VM moves by up to 1.5× from
one run to the next. For comparing two versions of the code, not for rates.

Each path runs over ``--events`` of ``bench/gen.py``'s events in a fresh interpreter under
``valgrind --tool=cachegrind``, once with one pass and once with three; the difference of the two
totals, divided by two passes of events, is the path's instructions per event, free of start-up
and set-up. Paths:

- **parse + encode**: a JSON line to its Kafka message (``EventParser.parse``), collector and replay;
- **consumer loop**: ``ConsumerLoop`` and the consumer adapter around a sink that does nothing
  (librdkafka replaced by a stand-in, as in ``bench/codec.py``);
- **loader transform**: ``ClickHouseSink.transform`` (id window, decoding, the row);
- **uploader transform**: ``RecordReader.read`` with ``verify_records`` (the check, the file's key);
- **aggregator transform**: ``ChargeReader.read``;
- **aggregator window**: the dedup window's ``fresh`` + ``extend`` and ``Window.of`` over the charges.

Usage: ``bench/instructions.py [--events N] [--paths a,b] [TREE ...]`` — each TREE a checkout of
eventd (default: this one), e.g. ``git worktree add --detach /tmp/before HEAD~3`` then
``bench/instructions.py . /tmp/before``. Installs Debian's valgrind when it is missing (as root).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
PATHS = ("parse + encode", "consumer loop", "loader transform", "uploader transform", "aggregator transform",
         "aggregator window")


def count(tree: Path, path: str, events: int, passes: int) -> int:
    """Instructions of a whole interpreter run doing ``passes`` passes of ``path``."""
    python = REPO / ".tox" / "py311" / "bin" / "python"
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                          str(python), __file__, "--inner", str(tree), path, str(events), str(passes)],
                         capture_output=True, text=True, check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode or found is None:
        raise SystemExit(f"{path} in {tree} failed:\n{out.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def per_event(tree: Path, path: str, events: int) -> float:
    return (count(tree, path, events, 3) - count(tree, path, events, 1)) / (2 * events)


# -- inside the measured interpreter ------------------------------------------------------------

def workload(path: str, events: int) -> Callable[[], object]:
    """One pass of ``path`` over ``events`` events, everything else prepared beforehand."""
    from bench import gen
    from eventd.config import load_config
    from eventd.event.envelope import EventParser
    from eventd.event.schemas import SchemaStore
    from eventd.kafka.batch import Message
    cfg = load_config(str(Path(sys.path[0]) / "conf" / "eventd.yaml"))
    store = SchemaStore.load(cfg.events.schema_dir)
    parser = EventParser(store, cfg.events, "", 6, "benchhost")
    lines, _ = gen.lines(events)
    parsed = [parser.parse(line, "tcp", 1_767_225_600_000, lambda: "unused") for line in lines]
    # Six partitions with consecutive offsets, as a consumer reads them.
    msgs = [Message(e.topic, i % 6, i // 6, e.key, e.value, 0) for i, e in enumerate(parsed)]
    if path == "parse + encode":
        return lambda: [parser.parse(line, "tcp", 1, lambda: "x") for line in lines]
    if path == "consumer loop":
        return _loop(msgs)
    if path == "loader transform":
        return _loader(cfg, store, msgs)
    if path == "uploader transform":
        from eventd.roles.hdfs_uploader.records import RecordReader
        topics = {e.schema.type: e.topic for e in parsed}
        reader = RecordReader(store, True, lambda family: topics.get(family, "?"))
        return lambda: [reader.read(m) for m in msgs]
    from eventd.roles.balance_aggregator.events import ChargeReader, DayOf
    charges = ChargeReader(store, DayOf("UTC"))
    if path == "aggregator transform":
        return lambda: [charges.read(m) for m in msgs]
    return _window([charges.read(m) for m in msgs])


def _loop(msgs: list[Any]) -> Callable[[], object]:
    import confluent_kafka
    from bench.codec import _StandIn
    from eventd.config.common import DeadLetterConfig
    from eventd.kafka.consumer import Consumer
    from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings, Start
    from eventd.kafka.deadletter import InvalidLimit
    from eventd.kafka.types import TopicPartition

    class Offline(Consumer):
        """The adapter's reading path; no group, no commits."""

        def committed(self, tps: list[Any]) -> dict[Any, Any]:  # type: ignore[override]
            return {}

        def commit(self, offsets: dict[Any, Any], timeout: float = 0) -> None:
            pass

    class Sink:
        def start(self, partitions: list[Any], committed: Any) -> dict[Any, Start]:
            return {tp: Start(offset=0) for tp in partitions}

        def transform(self, msg: Any) -> int:
            return msg.offset

        def write(self, batch: Any, loop: Any) -> None:
            pass

    raw = [confluent_kafka.Message(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                                   timestamp=(1, 0)) for m in msgs]
    tps = sorted({TopicPartition(m.topic, m.partition) for m in msgs})

    def run() -> None:
        stand_in = _StandIn(raw)
        loop = ConsumerLoop(LoopSettings("bench", [], 100_000, 1e9), Offline(stand_in, 10_000), Sink(),  # type: ignore
                            None, InvalidLimit(DeadLetterConfig(0.5, 10_000)))   # type: ignore[arg-type]
        loop.on_assigned(tps)
        while stand_in.i < len(raw):
            loop._poll_once()
    return run


def _loader(cfg: Any, store: Any, msgs: list[Any]) -> Callable[[], object]:
    from eventd.event.codec import Decoder
    from eventd.kafka.types import TopicPartition
    from eventd.roles.clickhouse_loader.mapping import RowMapper
    from eventd.roles.clickhouse_loader.sink import ClickHouseSink
    mapper = RowMapper.build(cfg.clickhouse_loader.columns, store, cfg.events)
    sink = ClickHouseSink("bench", "bench", Decoder(store), mapper, None, 100_000)  # type: ignore[arg-type]
    tps = sorted({TopicPartition(m.topic, m.partition) for m in msgs})

    def run() -> None:
        sink.start(tps, {})           # empty id windows: no event counts as a resend
        for m in msgs:
            sink.transform(m)
    return run


def _window(charges: list[Any]) -> Callable[[], object]:
    from eventd.roles.balance_aggregator.dedup import RecentIds
    from eventd.roles.balance_aggregator.window import Window
    parts: dict[int, list[Any]] = {}
    for c in charges:
        parts.setdefault(c.partition, []).append(c)

    def run() -> None:
        for items in parts.values():
            ids = RecentIds(100_000, 0)
            ids.fresh(items)
            ids.extend(items, items[-1].offset + 1)
        Window.of(charges)
    return run


def inner(tree: str, path: str, events: int, passes: int) -> None:
    import gc
    sys.path.insert(0, tree)
    gc.disable()          # collections depend on what was allocated before: not the path's own work
    run = workload(path, events)
    for _ in range(passes):
        run()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--inner"]:
        inner(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", type=Path, default=[REPO])
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--paths", default=",".join(PATHS))
    args = ap.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",")]
    unknown = set(paths) - set(PATHS)
    if unknown:
        ap.error(f"unknown paths {sorted(unknown)}; known: {', '.join(PATHS)}")
    trees = [t.resolve() for t in args.trees]
    if not (REPO / ".tox" / "py311" / "bin" / "python").exists():
        raise SystemExit("bench/instructions.py runs the paths with the test environment's Python: run init/testenv")
    _need_valgrind()
    print(f"Command: `bench/instructions.py {' '.join(argv)}` — instructions per event, valgrind "
          f"cachegrind, (3 passes − 1 pass) / 2 over {args.events:,} events\n")
    print("| path | " + " | ".join(_label(t) for t in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for path in paths:
        print(f"| {path} | " + " | ".join(f"{per_event(t, path, args.events):,.0f}" for t in trees) + " |",
              flush=True)
    return 0


def _need_valgrind() -> None:
    """Install Debian's valgrind when it is missing (as root), else say how."""
    if shutil.which("valgrind"):
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/instructions.py needs valgrind: apt-get install valgrind (as root)")
    print("installing valgrind (apt-get install valgrind)", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "valgrind"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _label(tree: Path) -> str:
    """The checkout's name and commit, marked + when its files differ from the commit."""
    git = ["git", "-C", str(tree)]
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return f"{tree.name} ({rev or '?'}{'+' if dirty else ''})"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")   # the same hashing in every run: the same count
    sys.exit(main(sys.argv[1:]))
