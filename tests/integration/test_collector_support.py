"""Helpers for the collector's integration tests (test_collector.py, test_collector_faults.py):
a collector process on the test's config, clients for each input, and reading Kafka back."""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eventd.config import load_config
from eventd.event.codec import Decoder
from eventd.event.schemas import SchemaStore
from eventd.kafka.topics import ensure_topics
from harness import SCHEMAS, RoleProcess, TestEnv, consume_all, free_port, wait_for

TYPES = ("impression", "click", "conversion", "bid")
STORE = SchemaStore.load(str(SCHEMAS))
DECODER = Decoder(STORE)


@dataclass(frozen=True)
class Sent:
    """An event as the test sent it: its id and the money it carries (micro-units)."""

    id: str
    type: str
    money: int


def event(n: int, run: str, type_: str = "", cost: str | float | int = "0.000001", **extra: Any) -> tuple[bytes, Sent]:
    """Event ``n`` of a test run, with an explicit id and known money."""
    t = type_ or TYPES[n % 3]
    ev = {"id": f"{run}-{n}", "type": t, "time": 1_767_268_800_000 + n, "campaign_id": 1000 + n % 7,
          "advertiser_id": 5, "publisher_id": 6, **extra}
    money_field = "bid" if t == "bid" else "cost"
    ev[money_field] = cost
    micros = int(Decimal(str(cost)) * 1_000_000)
    return json.dumps(ev).encode(), Sent(ev["id"], t, micros)


def collector_settings(env: TestEnv, **collector: Any) -> dict[str, Any]:
    s = env.settings()
    for role in ("clickhouse_loader", "balance_aggregator", "hdfs_uploader"):
        s[role]["enabled"] = False
    c = s["collector"]
    c["udp"] = {"enabled": True, "listen": f"127.0.0.1:{free_port()}"}
    c["unix_datagram"]["enabled"] = True
    c["drain_timeout"] = "5s"
    for key, value in collector.items():
        if isinstance(value, dict) and isinstance(c.get(key), dict):
            c[key].update(value)
        else:
            c[key] = value
    return s


class Collector:
    """``eventd role collector`` on the test's config, with clients for its inputs."""

    def __init__(self, env: TestEnv, processes: list[RoleProcess], settings: dict[str, Any]) -> None:
        self.env, self.processes, self.settings = env, processes, settings
        self.config = env.write_config(settings)
        self.http_port = int(settings["collector"]["http"]["listen"].rsplit(":", 1)[1])
        self.tcp_port = int(settings["collector"]["tcp"]["listen"].rsplit(":", 1)[1])
        self.udp_port = int(settings["collector"]["udp"]["listen"].rsplit(":", 1)[1])
        self.proc: RoleProcess | None = None
        self.starts = 0

    def ensure_topics(self) -> None:
        ensure_topics(load_config(str(self.config)), STORE)

    def start(self, connected: bool = True) -> "Collector":
        self.starts += 1
        self.proc = RoleProcess(self.env, ["role", "collector"], self.config, f"collector-{self.starts}")
        self.processes.append(self.proc)
        wait_for(lambda: self.health() is not None or not self.proc.alive(), 30, "the collector answering")
        assert self.proc.alive(), self.proc.log()
        if connected:
            wait_for(lambda: (self.health() or {}).get("kafka") == "connected", 60, "the collector connected to Kafka")
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
            conn.request("GET", "/healthz")
            doc = json.loads(conn.getresponse().read())
            conn.close()
            return doc
        except (OSError, ValueError):
            return None

    def wait_drained(self, timeout: float = 60) -> None:
        wait_for(lambda: (self.health() or {}).get("unacked_events") == 0, timeout, "the queue drained into Kafka")

    def post(self, lines: list[bytes], content_type: str = "application/x-ndjson",
             conn: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, Any]]:
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            c.request("POST", "/v1/events", b"\n".join(lines) + b"\n", {"Content-Type": content_type})
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            if own:
                c.close()

    def stream(self, lines: list[bytes], unix: bool = False) -> list[dict[str, Any]]:
        """Send lines over TCP (or the unix socket), half-close, return every answer line."""
        if unix:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.settings["collector"]["unix"]["path"])
        else:
            s = socket.create_connection(("127.0.0.1", self.tcp_port))
        with s:
            s.settimeout(30)
            s.sendall(b"".join(x + b"\n" for x in lines))
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return [json.loads(x) for x in out.splitlines()]

    def datagrams(self, lines: list[bytes], unix: bool = False) -> None:
        if unix:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                for x in lines:
                    s.sendto(x, self.settings["collector"]["unix_datagram"]["path"])
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for x in lines:
                    s.sendto(x, ("127.0.0.1", self.udp_port))
                    time.sleep(0.0005)      # loopback UDP drops bursts beyond the socket buffer


def event_topics(env: TestEnv) -> list[str]:
    return [env.topic(t) for t in TYPES] + [env.topic("_generic")]


def read_kafka(env: TestEnv, expected: int, timeout: float = 60) -> list[tuple[str, bytes, dict[str, Any]]]:
    """Every event message of the test's topics, decoded with the schema files: (topic, key, record)."""
    out = []
    for m in consume_all(event_topics(env), expected, timeout):
        _, record = DECODER.decode(m.value)
        out.append((m.topic, m.key, record))
    return out


def money_of(record: dict[str, Any]) -> int:
    return (record.get("cost") or 0) + (record.get("bid") or 0)


def assert_delivered(env: TestEnv, sent: list[Sent], exactly_once: bool = True, timeout: float = 60) -> list:
    """Every sent event is in Kafka with its money exact; with ``exactly_once`` each only once."""
    got = read_kafka(env, len(sent), timeout)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for _, _, r in got:
        by_id.setdefault(r["id"], []).append(r)
    missing = [s.id for s in sent if s.id not in by_id]
    assert not missing, f"{len(missing)} acknowledged events not in Kafka, e.g. {missing[:5]}"
    for s in sent:
        for r in by_id[s.id]:
            assert (r["type"], money_of(r)) == (s.type, s.money), (s, r)
    if exactly_once:
        assert len(got) == len(sent), f"{len(got)} messages for {len(sent)} events"
    return got

