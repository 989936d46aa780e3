"""The services the benchmarks run against (``init/devstack``), Kafka helpers, and eventd itself as
processes: a config made like ``tests/integration/harness.py``'s ``TestEnv`` (unique topic prefix,
database and HDFS directory per run), ``eventd setup``, and ``eventd role NAME -c CONFIG``.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO, pin, say

DEVSTACK = REPO / "init" / "devstack"
KAFKA = "127.0.0.1:9092"
ROLE_PACKAGES = {"collector": "collector", "clickhouse-loader": "clickhouse_loader",
                 "balance-aggregator": "balance_aggregator", "hdfs-uploader": "hdfs_uploader"}


def devstack(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEVSTACK), *args], check=check, capture_output=True, text=True,
                          timeout=1800)


def service_pid(name: str) -> int | None:
    r = devstack("pid", name, check=False)
    return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else None


def tool_argv(kind: str, main: str, *args: str) -> list[str]:
    """A Java tool on the stack's Kafka or Hadoop classpath (``devstack tool`` execs java: same pid)."""
    return [sys.executable, str(DEVSTACK), "tool", kind, main, *args]


def role_available(role: str) -> bool:
    """True when ``eventd.roles.<pkg>`` exists and has its ``main`` (roles are being written)."""
    try:
        module = importlib.import_module(f"eventd.roles.{ROLE_PACKAGES[role]}")
    except ImportError:
        return False
    return callable(getattr(module, "main", None))


# --------------------------------------------------------------------------------------------------- Kafka

def admin():  # type: ignore[no-untyped-def]
    from kafka import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=KAFKA, client_id="bench-admin")


def create_topics(names: list[str], partitions: int) -> None:
    from kafka.admin import NewTopic
    a = admin()
    try:
        existing = set(a.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            a.create_topics(new)
    finally:
        a.close()
    for n in names:   # metadata reaches every listener a moment after creation
        _wait_topic(n)


def _wait_topic(name: str, timeout: float = 30) -> None:
    from kafka import KafkaConsumer
    c = KafkaConsumer(bootstrap_servers=KAFKA)
    try:
        end = time.monotonic() + timeout
        while not c.partitions_for_topic(name):
            if time.monotonic() > end:
                raise TimeoutError(f"topic {name} did not appear")
            time.sleep(0.2)
            c.topics()
    finally:
        c.close()


def delete_topics_with_prefix(prefix: str) -> None:
    """Remove a run's topics (they hold hundreds of MB; the disk is shared)."""
    a = admin()
    try:
        doomed = [t for t in a.list_topics() if t.startswith(prefix)]
        if doomed:
            a.delete_topics(doomed)
    except Exception as exc:  # cleanup only: never fail a benchmark here
        say(f"could not delete topics {prefix}*: {exc}")
    finally:
        a.close()


class OffsetCounter:
    """Number of messages in some topics (sum of end offsets), cheap enough to poll every 50 ms."""

    def __init__(self, topics: list[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition
        self._c = KafkaConsumer(bootstrap_servers=KAFKA, group_id=None, enable_auto_commit=False)
        self._tps = [TopicPartition(t, p) for t in topics for p in sorted(self._c.partitions_for_topic(t) or ())]
        if len(self._tps) < len(topics):
            raise RuntimeError(f"some of {topics} have no partitions")

    def count(self) -> int:
        return sum(self._c.end_offsets(self._tps).values())

    def close(self) -> None:
        self._c.close()


def group_committed(group: str, topics: list[str]) -> int:
    """Sum of a consumer group's committed offsets on ``topics`` (asked without joining the group)."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
        return sum(c.committed(tp) or 0 for tp in tps)
    finally:
        c.close()


def produce(messages: list[tuple[str, bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Fill topics fast (acks=all, lz4, big batches) — the input of the consumer benchmarks.
    Returns each message's (partition, offset)."""
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=KAFKA, acks="all", compression_type="lz4", linger_ms=50,
                      batch_size=1 << 20, max_request_size=8 << 20)
    try:
        futures = [p.send(topic, value=value, key=key) for topic, key, value in messages]
        p.flush(600)
        return [(m.partition, m.offset) for m in (f.get(60) for f in futures)]
    finally:
        p.close()


# -------------------------------------------------------------------------------------------------- eventd

class EventdEnv:
    """One benchmark run's eventd: unique prefix ``bench<id>.``, database ``eventd_bench<id>``,
    HDFS base ``/eventd-bench/<id>``, state under ``work``."""

    def __init__(self, work: Path, partitions: int = 6) -> None:
        self.work = work
        self.id = "bench" + uuid.uuid4().hex[:8]
        self.prefix = f"{self.id}."
        self.db = f"eventd_{self.id}"
        self.hdfs_base = f"/eventd-bench/{self.id}"
        self.partitions = partitions
        work.mkdir(parents=True, exist_ok=True)

    def topic(self, event_type: str) -> str:
        return f"{self.prefix}{event_type}"

    def settings(self, roles: tuple[str, ...] = ()) -> dict[str, Any]:
        """eventd's defaults except names, ports and paths (and shorter ages, so a run's tail is
        flushed quickly; a bench is not a soak). Only ``roles`` are enabled, so ``eventd setup``
        creates only what the benchmark needs."""
        types = {t: {"topic": self.topic(t), "key": "campaign_id" if t != "bid" else "id",
                     "partitions": self.partitions} for t in ("impression", "click", "conversion", "bid")}
        out = {
            "node": {"host": "benchhost", "state_dir": str(self.work / "state"), "log_level": "warning"},
            "metrics": {"enabled": False},
            "kafka": {"bootstrap_servers": [KAFKA], "client_id": self.id,
                      "topics": {"prefix": self.prefix, "partitions": self.partitions,
                                 "dead_letter": f"{self.prefix}_deadletter", "control": f"{self.prefix}_control"}},
            "events": {"schema_dir": str(REPO / "conf" / "schemas"), "types": types},
            "daemon": {"run_dir": str(self.work / "run")},
            "collector": {"http": {"listen": f"127.0.0.1:{free_port()}"},
                          "tcp": {"enabled": True, "listen": f"127.0.0.1:{free_port()}"},
                          "unix": {"enabled": False, "path": str(self.work / "collector.sock")},
                          "queue": {"dir": str(self.work / "queue")}},
            "clickhouse_loader": {"ddl_dir": str(REPO / "conf" / "clickhouse"), "destinations": [
                {"name": "local", "hosts": ["127.0.0.1:9000"], "database": self.db,
                 "group_id": f"{self.id}-clickhouse"}]},
            "balance_aggregator": {"group_id": f"{self.id}-balances", "mariadb": {"database": self.db}},
            "hdfs_uploader": {"base_dir": self.hdfs_base, "staging_dir": str(self.work / "staging"),
                              "group_id": f"{self.id}-hdfs", "roll_age": "2s"},
        }
        for section in ("collector", "clickhouse_loader", "balance_aggregator", "hdfs_uploader"):
            out[section]["enabled"] = section.replace("_", "-") in roles
        return out

    def write_config(self, settings: dict[str, Any] | None = None, name: str = "eventd.yaml") -> Path:
        path = self.work / name
        path.write_text(yaml.safe_dump(settings or self.settings(), sort_keys=False))
        return path

    def setup(self, config: Path) -> None:
        """Topics (``ensure_topics``) and ``eventd setup`` (tables, schema, directories)."""
        from eventd.config import load_config
        from eventd.event.schemas import SchemaStore
        from eventd.kafka.topics import ensure_topics
        cfg = load_config(str(config))
        ensure_topics(cfg, SchemaStore.load(cfg.events.schema_dir))
        for t in ("impression", "click", "conversion", "bid"):
            _wait_topic(self.topic(t))
        r = subprocess.run([sys.executable, "-m", "eventd", "setup", "-c", str(config)], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
        if r.returncode:
            raise RuntimeError(f"eventd setup failed ({r.returncode}): {r.stdout}{r.stderr}")

    def event_topics(self, types: tuple[str, ...] = ("impression", "click", "conversion")) -> list[str]:
        return [self.topic(t) for t in types]


class Proc:
    """A program we started (eventd role, rsyslogd, syslog-ng …), its log in ``log``."""

    def __init__(self, argv: list[str], log: Path, cpus: str | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log = log
        self._out = open(log, "ab")
        self.proc = subprocess.Popen(pin(argv, cpus), stdout=self._out, stderr=subprocess.STDOUT,
                                     env={**(env or os.environ), "PYTHONUNBUFFERED": "1"}, cwd=cwd or REPO,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return self.proc.returncode

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def eventd_role(role: str, config: Path, log: Path, cpus: str | None) -> Proc:
    return Proc([sys.executable, "-m", "eventd", "role", role, "-c", str(config)], log, cpus)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30, proc: Proc | None = None) -> None:
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"process exited ({proc.proc.returncode}) before listening on {port}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def commit_group_start(group: str, topics: list[str]) -> None:
    """Commit offset 0 on every partition of ``topics`` for ``group``, so a consumer whose own
    default is to start at the end (librdkafka's ``latest``) reads the topics from the start."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    c = KafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
        c.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
    finally:
        c.close()
