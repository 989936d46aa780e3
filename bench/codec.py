#!/usr/bin/env python3
"""bench/codec.py — CPU per event of eventd's in-process hot paths, without Kafka or any service.

What each role does to every event besides talking to Kafka and its sink, measured in one process
on ``bench/gen.py``'s events (impressions, clicks, conversions; ~400-byte JSON lines):

- **parse + encode**: JSON line → validated, wrapped and encoded as Avro single-object, in one
  step (``EventParser.parse``, ``eventd/event/from_json.py``): what the collector and replay do;
- **encode** / **decode**: an Avro body from/to a record dict, eventd's compiled writer/reader
  (``eventd/event/binary.py``) side by side with fastavro's ``schemaless_writer``/``schemaless_reader``
  on the same records (the consumer roles decode; the HDFS uploader re-encodes old schema versions);
- **intake**: the collector's whole per-line path, parse + encode + append to a durable queue in a
  temporary directory, in batches of 100 lines (as a TCP or HTTP input hands them over);
- **clickhouse row**: decode + the loader's row mapping; **balance charge**: the aggregator's decode
  + charge;
- **consume**: the Python of eventd's consumer adapter per message (``Consumer.poll``: one eventd
  ``Message`` per librdkafka message, grouped by partition), with librdkafka's consumer replaced by
  a stand-in handing out the events as ready ``confluent_kafka.Message`` objects — what every
  consumer role pays per message besides librdkafka itself.

Each figure is the best of ``--repeat`` passes over ``--count`` events (the least disturbed by
other work on the machine), process CPU time, the process pinned to ``--cpu`` with
``os.sched_setaffinity``. Usage: ``bench/codec.py [--count N] [--repeat R] [--cpu C] [--write-docs]``
(``--write-docs`` replaces the ``bench:codec`` section of docs/performance.md).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testenv import use_test_python  # noqa: E402

use_test_python(REPO)

from fastavro import schemaless_reader, schemaless_writer  # noqa: E402

from bench import gen  # noqa: E402
from bench.common import replace_between  # noqa: E402
from eventd.config import load_config  # noqa: E402
from eventd.event.codec import Decoder  # noqa: E402
from eventd.event.envelope import EventParser  # noqa: E402
from eventd.event.schemas import SchemaStore  # noqa: E402
from eventd.kafka.batch import Message  # noqa: E402
from eventd.kafka.consumer import Consumer  # noqa: E402
from eventd.roles.balance_aggregator.events import ChargeReader, DayOf  # noqa: E402
from eventd.roles.clickhouse_loader.mapping import RowMapper  # noqa: E402
from eventd.roles.collector.intake import Intake  # noqa: E402
from eventd.roles.collector.queue import DurableQueue  # noqa: E402

CONFIG = str(REPO / "conf" / "eventd.yaml")


def best_us(run: Callable[[], object], events: int, repeat: int) -> float:
    """The least CPU time of ``repeat`` calls of ``run``, per event, in µs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best / events * 1e6


def measure(count: int, repeat: int) -> list[tuple[str, str, float]]:
    cfg = load_config(CONFIG)
    store = SchemaStore.load(cfg.events.schema_dir)
    parser = EventParser(store, cfg.events, cfg.kafka.topics.prefix, cfg.kafka.topics.partitions, "benchhost")
    lines, _ = gen.lines(count)
    events = [parser.parse(line, "tcp", 1_767_225_600_000, lambda: "unused") for line in lines]
    records = [(e.schema, e.record) for e in events]     # Event.record decodes: once, here
    bodies = [schema.write(record) for schema, record in records]
    messages = [Message(e.topic, 0, i, e.key, e.value, 0) for i, e in enumerate(events)]
    decoder, mapper = Decoder(store), RowMapper.build(cfg.clickhouse_loader.columns, store, cfg.events)
    charges = ChargeReader(store, DayOf("UTC"))

    # Loops that keep nothing: holding 20,000 results would add the garbage collector's scans of
    # a growing heap to whichever path is measured first.
    def parse() -> None:
        for line in lines:
            parser.parse(line, "tcp", 1, lambda: "x")

    def write() -> None:
        for schema, record in records:
            schema.write(record)

    def fastavro_write() -> None:
        for schema, record in records:
            schemaless_writer(io.BytesIO(), schema.schema, record)

    def read() -> None:
        for e, body in zip(events, bodies):
            e.schema.read(body, 0)

    def fastavro_read() -> None:
        for e, body in zip(events, bodies):
            schemaless_reader(io.BytesIO(body), e.schema.schema, None)

    def rows() -> None:
        for m in messages:
            entry, record = decoder.decode(m.value)
            mapper.row(entry, record, m)

    def charge() -> None:
        for m in messages:
            charges.read(m)

    consumer, stand_in = _adapter_on_stand_in(messages)

    def consume() -> None:
        stand_in.rewind()
        while consumer.poll(0):
            pass

    with tempfile.TemporaryDirectory(prefix="bench-codec-") as work:
        queue = DurableQueue.open(work, 64 << 20, 1 << 40)
        intake = Intake(parser, queue, 10)

        def intake_batches() -> None:
            for i in range(0, count, 100):
                intake.ingest(lines[i:i + 100], "tcp")

        figures = [(what, impl, best_us(run, count, repeat)) for what, impl, run in (
            ("parse + encode: JSON line → Avro message", "eventd", parse),
            ("encode", "eventd (compiled)", write),
            ("encode", "fastavro 1.13.1", fastavro_write),
            ("decode", "eventd (compiled)", read),
            ("decode", "fastavro 1.13.1", fastavro_read),
            ("intake: parse + encode + queue append", "eventd", intake_batches),
            ("clickhouse row: decode + map", "eventd", rows),
            ("balance charge: decode + charge", "eventd", charge),
            ("consume: poll → Message, per message", "eventd (librdkafka stand-in)", consume))]
        queue.close()
    return figures


class _StandIn:
    """librdkafka's consumer as ``Consumer.poll`` sees it, handing out prebuilt messages."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages, self.i = messages, 0

    def rewind(self) -> None:
        self.i = 0

    def poll(self, timeout: float) -> Any:
        i = self.i
        if i >= len(self.messages):
            return None
        self.i = i + 1
        return self.messages[i]


def _adapter_on_stand_in(messages: list[Message]) -> tuple[Consumer, _StandIn]:
    """eventd's consumer adapter without a connection: only its reading path is used."""
    import confluent_kafka
    stand_in = _StandIn([confluent_kafka.Message(topic=m.topic, partition=m.offset % 6, offset=m.offset, key=m.key,
                                                 value=m.value, timestamp=(1, m.timestamp)) for m in messages])
    return Consumer(stand_in, 10_000), stand_in  # type: ignore[arg-type]


def report(figures: list[tuple[str, str, float]], args: argparse.Namespace) -> str:
    load = "/".join(f"{v:.2f}" for v in os.getloadavg())
    out = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, Python "
           f"{platform.python_version()}, core {args.cpu}; load average at the end {load}.",
           f"Command: `bench/codec.py --count {args.count} --repeat {args.repeat}` — best of {args.repeat} "
           f"passes over {args.count:,} events, CPU µs per event.", "",
           "| path | implementation | CPU µs/event |", "|---|---|---:|"]
    out += [f"| {what} | {impl} | {us:.1f} |" for what, impl, us in figures]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench/codec.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {args.cpu})
    text = report(measure(args.count, args.repeat), args)
    print(text)
    if args.write_docs and not replace_between(REPO / "docs" / "performance.md", "codec", text):
        print("docs/performance.md has no bench:codec section", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
