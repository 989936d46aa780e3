#!/usr/bin/env python3
"""bench/kafka_clients.py — kafka-python vs confluent-kafka (librdkafka) vs eventd's own wrappers
around confluent-kafka, on the local Kafka.

Measures what eventd's roles pay per message to their Kafka client (it decided the move from
kafka-python to confluent-kafka), and what eventd's wrappers add (``eventd.kafka.producer.Producer``:
byte budget, a future and a callback per message; ``eventd.kafka.consumer.Consumer``: one
librdkafka call and one eventd ``Message`` per message):

- **produce**: N messages (``bench/gen.py`` JSON lines, ~400 bytes; key = campaign id; explicit
  partition = campaign % 6) with acks=all, idempotence, lz4, linger 20 ms, 1 MiB batches and a
  per-message delivery callback (eventd acknowledges each event on its delivery); the clock runs
  from the first send until ``flush`` returns;
- **consume**: the same N messages (the topic kafka-python produced, so both clients read the same
  batches) from the beginning with a new consumer group, auto-commit off, a synchronous commit
  every 10,000 messages and at the end; every message's partition, offset, key, value and timestamp
  are read, as eventd's loop does. The clock runs from ``subscribe`` (so it includes the group
  join, reported separately) until the final commit.

Each measurement runs in a fresh process pinned with ``taskset`` (``--cpus``, default core 1);
CPU is that process's user+system time (``os.times``: every thread, so the clients' I/O threads
count) over the measured interval. Figures are medians of ``--runs`` runs, each with its own
``bench-kc-*`` topics, deleted afterwards. kafka-python uses the settings eventd had with it;
"eventd" uses eventd's settings builders (``eventd.kafka.clients``) and wrappers.

Usage: bench/kafka_clients.py [--count N] [--runs R] [--cpus CPUS] [--write-docs]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testenv import use_test_python  # noqa: E402

use_test_python(REPO)

from bench.common import replace_between  # noqa: E402

BOOTSTRAP = "127.0.0.1:9092"
PARTITIONS = 6
COMMIT_EVERY = 10_000
CLIENTS = ("kafka-python", "confluent-kafka", "eventd")
OPERATIONS = ("produce", "consume")
DOC = REPO / "docs" / "performance.md"
MARKER = "kafka-clients"
# The settings the comparison fixes, in eventd's own config form (the sample's defaults).
KAFKA_YAML = f"""kafka:
  bootstrap_servers: ["{BOOTSTRAP}"]
  client_id: bench-kc
  producer: {{compression: lz4, linger: 20ms, batch_size: 1MiB, max_request_size: 8MiB}}
  consumer: {{session_timeout: 10s, heartbeat_interval: 3s, max_poll_records: 10000, fetch_max_bytes: 50MiB}}
"""


def say(msg: str) -> None:
    print(f"bench-kc: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ in the measured process

@dataclass
class Figures:
    """One measurement, as the measured process reports it on stdout (one JSON line)."""

    messages: int
    seconds: float
    cpu: float
    join: float = 0.0           # consume: seconds from subscribe to the first message
    errors: int = 0
    bytes: int = 0              # consume: key + value bytes read
    versions: dict[str, str] = field(default_factory=dict)


def kafka_config() -> Any:
    """eventd's ``KafkaConfig`` for the benchmark's settings (parsed like any eventd config)."""
    from eventd.config.common import KafkaConfig
    from eventd.config.reader import load_yaml
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(KAFKA_YAML)
        fh.flush()
        return KafkaConfig.read(load_yaml(fh.name).section("kafka"))


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system


def produce_kafka_python(topic: str, data: list[tuple[bytes, int, bytes]]) -> Figures:
    """Send ``data`` with eventd's producer settings; clock from first send to flush."""
    import kafka
    producer = kafka_python_producer()
    producer.partitions_for(topic)           # metadata before the clock, as for confluent-kafka
    failed = [0]

    def done(result: object) -> None:
        if isinstance(result, Exception):
            failed[0] += 1
    t0, c0 = time.monotonic(), cpu_now()
    for key, partition, value in data:
        producer.send(topic, value=value, key=key, partition=partition).add_both(done)
    producer.flush()
    figures = Figures(len(data), time.monotonic() - t0, cpu_now() - c0, errors=failed[0],
                      versions={"kafka-python": kafka.__version__})
    producer.close()
    return figures


def kafka_python_producer() -> Any:
    """The producer eventd used before it moved to confluent-kafka (its settings then)."""
    from kafka import KafkaProducer
    cfg = kafka_config()
    p = cfg.producer
    return KafkaProducer(bootstrap_servers=BOOTSTRAP, client_id="bench-kp", acks="all", enable_idempotence=True,
                         compression_type=None if p.compression == "none" else p.compression,
                         linger_ms=int(p.linger * 1000), batch_size=p.batch_size,
                         max_request_size=p.max_request_size, allow_auto_create_topics=False,
                         max_in_flight_requests_per_connection=5, delivery_timeout_ms=120_000)


def kafka_python_consumer(group: str) -> Any:
    """The consumer eventd used before it moved to confluent-kafka (its settings then)."""
    from kafka import KafkaConsumer
    c = kafka_config().consumer
    return KafkaConsumer(bootstrap_servers=BOOTSTRAP, client_id="bench-kp", group_id=group,
                         enable_auto_commit=False, auto_offset_reset="earliest", allow_auto_create_topics=False,
                         session_timeout_ms=int(c.session_timeout * 1000),
                         heartbeat_interval_ms=int(c.heartbeat_interval * 1000),
                         max_poll_interval_ms=int(c.max_poll_interval * 1000),
                         max_poll_records=c.max_poll_records, fetch_max_bytes=c.fetch_max_bytes,
                         max_partition_fetch_bytes=min(c.fetch_max_bytes, 8 << 20))


def confluent_producer_conf() -> dict[str, Any]:
    """The kafka-python producer's settings in librdkafka's names."""
    p = kafka_config().producer
    return {"bootstrap.servers": BOOTSTRAP, "client.id": "bench-kc-bench", "acks": "all",
            "enable.idempotence": True, "compression.type": p.compression, "linger.ms": int(p.linger * 1000),
            "batch.size": p.batch_size, "message.max.bytes": p.max_request_size,
            "max.in.flight.requests.per.connection": 5, "delivery.timeout.ms": 120_000}


def produce_confluent(topic: str, data: list[tuple[bytes, int, bytes]]) -> Figures:
    """Send ``data`` with the same settings; callbacks are served by poll() every 1,000 sends."""
    import confluent_kafka
    producer = confluent_kafka.Producer(confluent_producer_conf())
    producer.list_topics(topic, timeout=10)
    failed = [0]

    def done(err: object, _msg: object) -> None:
        if err is not None:
            failed[0] += 1
    t0, c0 = time.monotonic(), cpu_now()
    for i, (key, partition, value) in enumerate(data):
        while True:
            try:
                producer.produce(topic, value, key, partition, on_delivery=done)
                break
            except BufferError:              # its local queue is full: let deliveries drain it
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    return Figures(len(data), time.monotonic() - t0, cpu_now() - c0, errors=failed[0] + left,
                   versions=confluent_versions())


def confluent_versions() -> dict[str, str]:
    import confluent_kafka
    from importlib.metadata import version
    return {"confluent-kafka": version("confluent-kafka"), "librdkafka": confluent_kafka.libversion()[0]}


class ReadCheck:
    """Counts what a consumer read, checking per partition that offsets only go up (read once)."""

    def __init__(self) -> None:
        self.count = self.bytes = self.errors = 0
        self.last: dict[int, int] = {}

    def add(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        if offset <= self.last.get(partition, -1):
            self.errors += 1
        self.last[partition] = offset
        self.count += 1
        self.bytes += len(value or b"") + len(key or b"")


def consume_kafka_python(topic: str, group: str, count: int) -> Figures:
    """Read ``count`` messages with eventd's consumer settings and its loop's poll batches."""
    import kafka
    cfg = kafka_config()
    consumer = kafka_python_consumer(group)
    check, since_commit, first = ReadCheck(), 0, 0.0
    t0, c0 = time.monotonic(), cpu_now()
    consumer.subscribe([topic])
    consumer.topics()                        # as eventd's loop does: avoids kafka-python's second join
    deadline = time.monotonic() + 120
    while check.count < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200, max_records=cfg.consumer.max_poll_records).values():
            first = first or time.monotonic()
            for r in records:
                check.add(r.partition, r.offset, r.key, r.value)
                _ = r.timestamp
            since_commit += len(records)
        if since_commit >= COMMIT_EVERY or (since_commit and check.count >= count):
            consumer.commit()
            since_commit = 0
    figures = Figures(check.count, time.monotonic() - t0, cpu_now() - c0, join=first - t0 if first else -1,
                      errors=check.errors, bytes=check.bytes, versions={"kafka-python": kafka.__version__})
    consumer.close(autocommit=False)
    return figures


def consume_confluent(topic: str, group: str, count: int) -> Figures:
    """Read ``count`` messages with the same settings, ``consume(num_messages=1000)`` batches."""
    import confluent_kafka
    c = kafka_config().consumer
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": BOOTSTRAP, "client.id": "bench-kc-bench", "group.id": group,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": int(c.session_timeout * 1000), "heartbeat.interval.ms": int(c.heartbeat_interval * 1000),
        "max.poll.interval.ms": int(c.max_poll_interval * 1000), "fetch.max.bytes": c.fetch_max_bytes,
        "max.partition.fetch.bytes": min(c.fetch_max_bytes, 8 << 20)})
    check, since_commit, first = ReadCheck(), 0, 0.0
    t0, c0 = time.monotonic(), cpu_now()
    consumer.subscribe([topic])
    deadline = time.monotonic() + 120
    while check.count < count and time.monotonic() < deadline:
        msgs = consumer.consume(num_messages=1000, timeout=0.2)
        for m in msgs:
            if m.error():
                check.errors += 1
                continue
            check.add(m.partition(), m.offset(), m.key(), m.value())
            _ = m.timestamp()
        if msgs:
            first = first or time.monotonic()
            since_commit += len(msgs)
        if since_commit >= COMMIT_EVERY or (since_commit and check.count >= count):
            consumer.commit(asynchronous=False)
            since_commit = 0
    figures = Figures(check.count, time.monotonic() - t0, cpu_now() - c0, join=first - t0 if first else -1,
                      errors=check.errors, bytes=check.bytes, versions=confluent_versions())
    consumer.close()
    return figures


def produce_eventd(topic: str, data: list[tuple[bytes, int, bytes]]) -> Figures:
    """Send ``data`` through eventd's Producer, a callback per message, as the collector does."""
    from eventd.kafka.producer import Producer
    producer = Producer(kafka_config(), "bench")
    producer.partitions_for(topic)
    failed = [0]

    def done(err: Exception | None) -> None:
        if err is not None:
            failed[0] += 1
    t0, c0 = time.monotonic(), cpu_now()
    for key, partition, value in data:
        producer.send(topic, value, key=key, on_done=done, partition=partition)
    producer.flush(120)
    figures = Figures(len(data), time.monotonic() - t0, cpu_now() - c0, errors=failed[0],
                      versions=confluent_versions())
    producer.close()
    return figures


def consume_eventd(topic: str, group: str, count: int) -> Figures:
    """Read ``count`` messages through eventd's consumer adapter, as the consumer loop does."""
    from eventd.kafka.consumer import new_consumer
    from eventd.kafka.types import OffsetAndMetadata
    consumer = new_consumer(kafka_config(), "bench", group)
    check, since_commit, first = ReadCheck(), 0, 0.0
    t0, c0 = time.monotonic(), cpu_now()
    consumer.subscribe([topic], lambda tps: {}, lambda tps: None)
    deadline, ends = time.monotonic() + 120, {}
    while check.count < count and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(0.2).items():
            first = first or time.monotonic()
            for m in msgs:
                check.add(m.partition, m.offset, m.key, m.value)
                _ = m.timestamp
            ends[tp] = msgs[-1].offset + 1
            since_commit += len(msgs)
        if since_commit >= COMMIT_EVERY or (since_commit and check.count >= count):
            consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
            since_commit = 0
    figures = Figures(check.count, time.monotonic() - t0, cpu_now() - c0, join=first - t0 if first else -1,
                      errors=check.errors, bytes=check.bytes, versions=confluent_versions())
    consumer.close()
    return figures


PRODUCE = {"kafka-python": produce_kafka_python, "confluent-kafka": produce_confluent, "eventd": produce_eventd}
CONSUME = {"kafka-python": consume_kafka_python, "confluent-kafka": consume_confluent, "eventd": consume_eventd}


def child(args: argparse.Namespace) -> int:
    """The measured process: one operation with one client; prints its :class:`Figures` as JSON."""
    if args.child == "produce":
        data = pickle.loads(Path(args.data).read_bytes())
        figures = PRODUCE[args.client](args.topic, data)
    else:
        figures = CONSUME[args.client](args.topic, args.group, args.count)
    print(json.dumps(figures.__dict__), flush=True)
    return 0


# ----------------------------------------------------------------------------------------- orchestration

@contextlib.contextmanager
def services_shared() -> Iterator[None]:
    """Hold the test suites' services lock shared (as bench/run does): a fault test that would
    restart Kafka waits for us instead of breaking a measurement."""
    with open("/tmp/eventd-services.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def wait_for_kafka(timeout: float = 300) -> None:
    """Wait until the broker answers (it may be coming back from another engineer's fault test)."""
    from kafka import KafkaAdminClient
    end = time.monotonic() + timeout
    while True:
        try:
            KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000).close()
            return
        except Exception as exc:                 # noqa: BLE001 - any failure means "not yet"
            if time.monotonic() > end:
                raise RuntimeError(f"Kafka at {BOOTSTRAP} does not answer: {exc}") from exc
            time.sleep(2)


def write_data(n: int, path: Path) -> int:
    """Pickle ``n`` (key, partition, value) triples from bench/gen.py's lines; returns their bytes."""
    from bench.gen import iter_lines
    data = [(str(obj["campaign_id"]).encode(), obj["campaign_id"] % PARTITIONS, line)
            for line, obj, _, _ in iter_lines(n, seed=1, tag="kc")]
    path.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    return sum(len(k) + len(v) for k, _, v in data)


class Topics:
    """Creates the run's topics (6 partitions) and deletes them and the groups afterwards."""

    def __init__(self) -> None:
        from kafka import KafkaAdminClient
        self.admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="bench-kc-admin")
        self.topics: list[str] = []
        self.groups: list[str] = []

    def create(self, name: str) -> str:
        from kafka.admin import NewTopic
        self.admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        self.topics.append(name)
        return name

    def end_total(self, name: str) -> int:
        """Messages the topic holds (sum of its partitions' end offsets)."""
        from kafka import KafkaConsumer, TopicPartition
        consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
        try:
            return sum(consumer.end_offsets([TopicPartition(name, p) for p in range(PARTITIONS)]).values())
        finally:
            consumer.close()

    def close(self) -> None:
        for what, names, delete in (("groups", self.groups, self.admin.delete_groups),
                                    ("topics", self.topics, self.admin.delete_topics)):
            if names:
                try:
                    delete(names)
                except Exception as exc:         # noqa: BLE001 - report, keep cleaning
                    say(f"could not delete {what} {names}: {exc}")
        self.admin.close()


def measure(python: str, cpus: str, argv: list[str]) -> Figures:
    """Run one measurement in a fresh process pinned to ``cpus``; its figures."""
    cmd = ["taskset", "-c", cpus, python, str(Path(__file__).resolve()), *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return Figures(**json.loads(out.stdout.strip().splitlines()[-1]))


def one_run(run: int, stamp: str, pythons: dict[str, str], args: argparse.Namespace, data: Path,
            expected_bytes: int) -> dict[tuple[str, str], Figures]:
    """Each client's produce and consume once, on this run's own topics (order alternates per run)."""
    topics, out = Topics(), {}
    order = CLIENTS if run % 2 == 0 else CLIENTS[::-1]
    try:
        names = {c: topics.create(f"bench-kc-{stamp}-r{run}-{c}") for c in CLIENTS}
        time.sleep(1)                            # let the new partitions' leaders settle
        for client in order:
            f = measure(pythons[client], args.cpus, ["--child", "produce", "--client", client,
                                                     "--topic", names[client], "--data", str(data)])
            held = topics.end_total(names[client])
            if f.errors or held != args.count:
                raise RuntimeError(f"{client} produce: {f.errors} errors, topic holds {held} of {args.count}")
            out[(client, "produce")] = f
        for client in order:
            group = f"bench-kc-{stamp}-r{run}-{client}"
            topics.groups.append(group)
            f = measure(pythons[client], args.cpus, ["--child", "consume", "--client", client, "--group", group,
                                                     "--topic", names["kafka-python"], "--count", str(args.count)])
            if f.errors or f.messages != args.count or f.bytes != expected_bytes:
                raise RuntimeError(f"{client} consume: read {f.messages} of {args.count} messages, "
                                   f"{f.bytes} of {expected_bytes} bytes, {f.errors} errors")
            out[(client, "consume")] = f
        for (client, op), f in out.items():
            say(f"run {run + 1}: {client:15} {op:8} {f.messages / f.seconds:9,.0f} msgs/s "
                f"{f.cpu / f.messages * 1e6:6.1f} CPU µs/msg" + (f"  (join {f.join:.2f}s)" if op == "consume" else ""))
    finally:
        topics.close()
    return out


def table(runs: list[dict[tuple[str, str], Figures]], count: int) -> str:
    """The markdown table: medians over runs; ratios against kafka-python."""
    rows = ["| client | operation | messages | msgs/s | CPU µs/msg | ratio vs kafka-python: msgs/s ×, CPU × |",
            "|---|---|---:|---:|---:|---:|"]
    versions = {k: v for r in runs for f in r.values() for k, v in f.versions.items()}
    label = {"kafka-python": f"kafka-python {versions.get('kafka-python', '?')}",
             "confluent-kafka": f"confluent-kafka {versions.get('confluent-kafka', '?')} "
                                f"(librdkafka {versions.get('librdkafka', '?')})",
             "eventd": "eventd's wrappers on confluent-kafka"}
    for op in OPERATIONS:
        rate = {c: statistics.median([count / r[(c, op)].seconds for r in runs]) for c in CLIENTS}
        cpu = {c: statistics.median([r[(c, op)].cpu / count * 1e6 for r in runs]) for c in CLIENTS}
        for c in CLIENTS:
            ratio = f"{rate[c] / rate['kafka-python']:.2f} / {cpu[c] / cpu['kafka-python']:.2f}"
            rows.append(f"| {label[c]} | {op} | {count:,} | {rate[c]:,.0f} | {cpu[c]:.1f} | "
                        f"{'**' + ratio + '**' if c != 'kafka-python' else ratio} |")
    return "\n".join(rows)


def report(runs: list[dict[tuple[str, str], Figures]], args: argparse.Namespace, load: tuple[str, str]) -> str:
    """The section's generated part: when, where, load, command, table, join times."""
    joins = {c: statistics.median([r[(c, "consume")].join for r in runs]) for c in CLIENTS}
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), platform.machine())
    return "\n".join([
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} × {cpu_model}, "
        f"Python {platform.python_version()}; load average (1/5/15 min) {load[0]} at start, {load[1]} at end.",
        f"Command: `{' '.join(['bench/kafka_clients.py', *args.argv])}` — median of {args.runs} runs, "
        f"each measurement a fresh process under `taskset -c {args.cpus}`.", "",
        table(runs, args.count), "",
        "Ratio: msgs/s of the row ÷ kafka-python's, then CPU µs/msg of the row ÷ kafka-python's. "
        "The consume clock includes the group join (median "
        + ", ".join(f"{joins[c]:.2f} s {c}" for c in CLIENTS) + ", nearly no CPU). Per run: "
        + "; ".join(f"{c} {op} " + "/".join(f"{r[(c, op)].cpu / args.count * 1e6:.1f}" for r in runs) + " µs"
                    for op in OPERATIONS for c in CLIENTS) + "."])


def loadavg() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/kafka_clients.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200_000, help="messages per measurement (default 200,000)")
    ap.add_argument("--runs", type=int, default=3, help="runs; each figure is their median (default 3)")
    ap.add_argument("--cpus", default="1", help="core(s) the measured processes are pinned to (default 1)")
    ap.add_argument("--write-docs", action="store_true", help=f"replace the {MARKER} section of {DOC.name}")
    for hidden in ("--child", "--client", "--topic", "--group", "--data"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.child:
        return child(args)
    pythons = {c: sys.executable for c in CLIENTS}
    with tempfile.TemporaryDirectory(prefix="bench-kc-") as tmp, services_shared():
        wait_for_kafka()
        data = Path(tmp) / "data.pickle"
        expected = write_data(args.count, data)
        say(f"{args.count:,} messages, {expected / args.count:.0f} bytes each on average (key + value)")
        load0, stamp = loadavg(), time.strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
        runs = [one_run(i, stamp, pythons, args, data, expected) for i in range(args.runs)]
        text = report(runs, args, (load0, loadavg()))
    print(text)
    if args.write_docs:
        if not replace_between(DOC, MARKER, text):
            raise SystemExit(f"{DOC} has no bench:{MARKER} section")
        say(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
