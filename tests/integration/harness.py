"""Shared machinery for integration tests: isolated configs against the devstack, role
processes that can be killed, and Kafka helpers. Every test gets its own topics, databases
and HDFS directory (a unique prefix), so tests never see each other's data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "conf" / "schemas"
DEVSTACK = REPO / "init" / "devstack"
KAFKA = "127.0.0.1:9092"
NAMENODE = "http://127.0.0.1:9870/webhdfs/v1"

SERVICES = {  # name → (host, port) that must accept connections
    "kafka": ("127.0.0.1", 9092), "zookeeper": ("127.0.0.1", 2181), "clickhouse": ("127.0.0.1", 9000),
    "mariadb": ("127.0.0.1", 3306), "hdfs-namenode": ("127.0.0.1", 9870), "hdfs-datanode": ("127.0.0.1", 9864),
}


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until truthy; fail the test naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def devstack(*args: str) -> None:
    """Run ``init/devstack ARGS`` (e.g. ``kill kafka``, ``up kafka``)."""
    subprocess.run([sys.executable, str(DEVSTACK), *args], check=True, timeout=600)


class TestEnv:
    """One test's isolated world: unique names, a state dir, and a config file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.id = "t" + uuid.uuid4().hex[:10]
        self.prefix = f"{self.id}."
        self.db = f"eventd_{self.id}"
        self.hdfs_base = f"/eventd-test/{self.id}"
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.metrics_port = free_port()

    def topic(self, event_type: str) -> str:
        return f"{self.prefix}{event_type}"

    def settings(self) -> dict[str, Any]:
        """The config as data; tests change it before :meth:`write_config`."""
        types = {t: {"topic": self.topic(t), "key": "campaign_id" if t != "bid" else "id", "partitions": 3}
                 for t in ("impression", "click", "conversion", "bid")}
        return {
            "node": {"host": "testhost", "state_dir": str(self.tmp / "state"), "log_level": "info"},
            "metrics": {"enabled": False, "listen": f"127.0.0.1:{self.metrics_port}"},
            "kafka": {"bootstrap_servers": [KAFKA], "client_id": self.id,
                      "topics": {"prefix": self.prefix, "partitions": 3, "dead_letter": f"{self.prefix}_deadletter",
                                 "control": f"{self.prefix}_control"},
                      "producer": {"linger": "5ms"},
                      "consumer": {"session_timeout": "6s", "heartbeat_interval": "1s"}},
            "events": {"schema_dir": str(SCHEMAS), "types": types},
            "daemon": {"run_dir": str(self.tmp / "run"), "stop_timeout": "20s",
                       "status_listen": f"127.0.0.1:{free_port()}"},
            "collector": {"http": {"listen": f"127.0.0.1:{self.http_port}"},
                          "tcp": {"enabled": True, "listen": f"127.0.0.1:{self.tcp_port}"},
                          "unix": {"path": str(self.tmp / "collector.sock")},
                          "unix_datagram": {"path": str(self.tmp / "collector.dgram")},
                          "queue": {"dir": str(self.tmp / "queue"), "segment_size": "1MiB", "max_size": "64MiB"}},
            "clickhouse_loader": {"max_age": "500ms", "ddl_dir": str(REPO / "conf" / "clickhouse"), "destinations": [
                {"name": "local", "hosts": ["127.0.0.1:9000"], "database": self.db,
                 "group_id": f"{self.id}-clickhouse-local"}]},
            "balance_aggregator": {"group_id": f"{self.id}-balances", "window": "300ms",
                                   "mariadb": {"database": self.db}},
            "hdfs_uploader": {"base_dir": self.hdfs_base, "staging_dir": str(self.tmp / "staging"),
                              "group_id": f"{self.id}-hdfs", "roll_age": "2s", "timeout": "10s"},
        }

    def write_config(self, settings: dict[str, Any] | None = None, name: str = "eventd.yaml") -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(settings or self.settings(), sort_keys=False))
        return path


class RoleProcess:
    """``eventd role NAME`` (or any eventd command) as a child process with its own log."""

    def __init__(self, env: TestEnv, args: list[str], config: Path, log_name: str) -> None:
        self.log_path = env.tmp / f"{log_name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "eventd", *args, "-c", str(config)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.alive():
            self.kill9()
        self._log.close()


def mariadb(db: str | None = None) -> Any:
    """A connection to the devstack's MariaDB as eventd (autocommit)."""
    import pymysql
    return pymysql.connect(host="127.0.0.1", port=3306, user="eventd", password="eventd", database=db,
                           autocommit=True)


def sql(db: str | None, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in database ``db``; its rows."""
    conn = mariadb(db)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def event_line(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def consume_all(topics: Iterable[str], expected: int, timeout: float = 60.0) -> list[Any]:
    """Read ``topics`` from the beginning (no group): wait for at least ``expected`` messages (up
    to ``timeout``), then read on to the end the partitions have by then — duplicates included,
    however many there are."""
    from kafka import KafkaConsumer, TopicPartition as KTP
    consumer = KafkaConsumer(bootstrap_servers=KAFKA, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000)
    tps = [KTP(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    out: list[Any] = []
    end = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < end:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < end + 30:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
    finally:
        consumer.close()
    return out


LOCK_PATH = "/tmp/eventd-services.lock"


class ServiceFault:
    """Held while a test stops or kills a shared service (``devstack kill kafka``).

    Every integration test holds the lock shared; a fault test takes it exclusively, so it
    never pulls a service from under another test running at the same time (several
    developers' test runs share one devstack). The test must bring the service back
    (``devstack("up", name)``) before leaving, and :meth:`__exit__` makes sure it does."""

    def __init__(self, *services: str) -> None:
        self.services = services

    def __enter__(self) -> "ServiceFault":
        import fcntl
        _shared_lock.release()
        self._fh = open(LOCK_PATH, "a")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl
        try:
            devstack("up", *self.services)
        finally:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            _shared_lock.acquire()


class _SharedLock:
    def __init__(self) -> None:
        self._fh = None

    def acquire(self) -> None:
        import fcntl
        if self._fh is None:
            self._fh = open(LOCK_PATH, "a")
            fcntl.flock(self._fh, fcntl.LOCK_SH)

    def release(self) -> None:
        import fcntl
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


_shared_lock = _SharedLock()


# -- reading HDFS (WebHDFS on the NameNode) -------------------------------------------------------
def hdfs_get(path: str, op: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(f"{NAMENODE}{path}?op={op}&user.name=eventd", timeout=timeout) as resp:
        return resp.read()


def hdfs_walk(path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every file below ``path`` (recursively) with its FileStatus; nothing if ``path`` does not exist."""
    try:
        listing = json.loads(hdfs_get(path, "LISTSTATUS"))["FileStatuses"]["FileStatus"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    out = []
    for st in listing:
        child = f"{path}/{st['pathSuffix']}"
        out += hdfs_walk(child) if st["type"] == "DIRECTORY" else [(child, st)]
    return out
