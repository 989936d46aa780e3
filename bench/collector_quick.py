#!/usr/bin/env python3
"""A quick measurement of one collector process (the full comparison with peers is bench/run).

    python3 bench/collector_quick.py tcp|http|latency [--events N] [--rate R] [--cpu CPU] [--profile]

Starts ``eventd role collector`` on a throw-away config (real Kafka from init/devstack: acks=all,
idempotence, lz4; 6 partitions per topic), pinned to one core with ``taskset`` when ``--cpu`` is
given, and drives it from this process:

- ``tcp``: N NDJSON lines over one connection as fast as it takes them (answers read as they come);
- ``http``: N events as NDJSON bodies of 100 lines over 4 keep-alive connections;
- ``latency``: N single-event requests (``application/json``) at ``--rate`` (5,000/s) on 8 connections, each
  answer's latency measured from its scheduled send time (p50/p90/p99/max).

Reports the rate at which answers came, the rate until Kafka had acknowledged every event (the
collector's /healthz ``unacked_events`` reaches 0), and the collector's CPU time per event (from
/proc). ``--profile`` runs the collector under cProfile in every thread (``bench/profiled.py``) and
prints the functions with the most time of their own, waiting left out.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testenv import use_test_python  # noqa: E402

use_test_python(REPO)

TYPES = ("impression", "impression", "impression", "click", "bid", "conversion")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def line(i: int) -> bytes:
    """A realistic ad event (~280 bytes): money as decimal strings, ids as numbers, no event id."""
    return json.dumps({"type": TYPES[i % 6], "time": 1_767_268_800_000 + i, "campaign_id": 1000 + i % 500,
                       "advertiser_id": 7, "publisher_id": 11, "site_id": 12 + i % 50, "zone_id": 3,
                       "country": "DE", "device": "mobile", "ip": "10.1.2.3",
                       "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "cost": "0.00%04d" % (i % 10000),
                       "revenue": "0.000100"}).encode()


class Collector:
    def __init__(self, work: Path, cpu: str | None, profile: Path | None = None) -> None:
        self.tag = tag = "quick%x" % random.getrandbits(24)
        self.http_port, self.tcp_port = free_port(), free_port()
        types = {t: {"topic": f"{tag}.{t}", "key": "id" if t == "bid" else "campaign_id", "partitions": 6}
                 for t in set(TYPES)}
        cfg = {"node": {"host": "bench", "state_dir": str(work / "state")}, "metrics": {"enabled": False},
               "kafka": {"topics": {"prefix": f"{tag}.", "partitions": 6, "dead_letter": f"{tag}._dl",
                                    "control": f"{tag}._ctl"}},
               "events": {"schema_dir": str(REPO / "conf" / "schemas"), "types": types},
               "collector": {"http": {"listen": f"127.0.0.1:{self.http_port}"},
                             "tcp": {"enabled": True, "listen": f"127.0.0.1:{self.tcp_port}"},
                             "unix": {"enabled": False}, "queue": {"dir": str(work / "queue")}},
               "clickhouse_loader": {"enabled": False}, "balance_aggregator": {"enabled": False},
               "hdfs_uploader": {"enabled": False}}
        path = work / "eventd.yaml"
        path.write_text(yaml.safe_dump(cfg))
        from eventd.config import load_config
        from eventd.event.schemas import SchemaStore
        from eventd.kafka.topics import ensure_topics
        loaded = load_config(str(path))
        ensure_topics(loaded, SchemaStore.load(loaded.events.schema_dir))
        cmd = [sys.executable, "-m", "eventd", "role", "collector", "-c", str(path)]
        if profile is not None:
            cmd[1:3] = [str(REPO / "bench" / "profiled.py"), str(profile), "eventd"]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu] + cmd
        self.proc = subprocess.Popen(cmd, stdout=open(work / "collector.log", "wb"), stderr=subprocess.STDOUT,
                                     cwd=REPO)
        while (self.health() or {}).get("kafka") != "connected":
            if self.proc.poll() is not None:
                sys.exit(f"the collector exited; see {work / 'collector.log'}")
            time.sleep(0.1)

    def health(self) -> dict | None:
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
            c.request("GET", "/healthz")
            doc = json.loads(c.getresponse().read())
            c.close()
            return doc
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Stop the collector and delete this run's topics (the devstack is shared)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        from kafka import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
        try:
            admin.delete_topics(sorted(t for t in admin.list_topics() if t.startswith(self.tag + ".")))
        finally:
            admin.close()


def run_tcp(c: Collector, lines: list[bytes]) -> None:
    s = socket.create_connection(("127.0.0.1", c.tcp_port))
    accepted = [0]

    def answers() -> None:
        for raw in s.makefile("rb"):
            accepted[0] += json.loads(raw)["accepted"]

    reader = threading.Thread(target=answers)
    reader.start()
    data = b"".join(x + b"\n" for x in lines)
    for i in range(0, len(data), 65536):
        s.sendall(data[i:i + 65536])
    s.shutdown(socket.SHUT_WR)
    reader.join()
    assert accepted[0] == len(lines), accepted


def run_http(c: Collector, lines: list[bytes], batch: int = 100, connections: int = 4) -> None:
    bodies = [b"\n".join(lines[i:i + batch]) + b"\n" for i in range(0, len(lines), batch)]
    accepted = []

    def worker(part: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", c.http_port)
        for body in part:
            conn.request("POST", "/v1/events", body, {"Content-Type": "application/x-ndjson"})
            accepted.append(json.loads(conn.getresponse().read())["accepted"])

    threads = [threading.Thread(target=worker, args=(bodies[k::connections],)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(accepted) == len(lines)


def run_latency(c: Collector, lines: list[bytes], rate: float = 5000, connections: int = 8) -> list[float]:
    latencies: list[float] = []
    t0 = time.perf_counter() + 0.2

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", c.http_port)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(k, len(lines), connections):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            conn.request("POST", "/v1/events", lines[i], {"Content-Type": "application/json"})
            conn.getresponse().read()
            latencies.append(time.perf_counter() - due)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(latencies)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["tcp", "http", "latency"])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=5000, help="offered events/s in latency mode")
    ap.add_argument("--cpu", help="pin the collector to this core (taskset -c)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="collector-quick-"))
    profile = work / "collector.pstats" if args.profile else None
    c = Collector(work, args.cpu, profile)
    try:
        lines = [line(i) for i in range(args.events)]
        cpu0, t0 = c.cpu_seconds(), time.perf_counter()
        if args.mode == "latency":
            latencies = run_latency(c, lines, args.rate)
        else:
            latencies = {"tcp": run_tcp, "http": run_http}[args.mode](c, lines)
        answered = time.perf_counter() - t0
        while (c.health() or {}).get("unacked_events") != 0:
            time.sleep(0.01)
        in_kafka = time.perf_counter() - t0
        cpu = c.cpu_seconds() - cpu0
        n = len(lines)
        print(f"{args.mode}: {n} events of {sum(map(len, lines)) // n} bytes; answered at {n / answered:,.0f}/s; "
              f"all acknowledged by Kafka at {n / in_kafka:,.0f}/s; collector CPU {cpu / n * 1e6:.1f} µs/event "
              f"({cpu / in_kafka * 100:.0f}% of a core); load average {os.getloadavg()[0]:.1f}")
        if latencies:
            q = {p: latencies[int(p / 100 * (len(latencies) - 1))] * 1000 for p in (50, 90, 99, 100)}
            print(f"answer latency at {args.rate:,.0f}/s offered: p50 {q[50]:.2f} ms, p90 {q[90]:.2f} ms, p99 {q[99]:.2f} ms, "
                  f"max {q[100]:.2f} ms")
    finally:
        c.stop()
        if profile is not None:
            from bench.profiled import top_costs
            print(top_costs(str(profile), n=25))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
