"""The collector under faults, against the real Kafka: kill -9 in the middle of a stream, Kafka
stopped and restarted during a stream, the queue's disk cap reached. In each, every event the
collector acknowledged ends up in Kafka (a resend after a crash may repeat an event; its id is the
same, so downstream recognises it)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Callable

from test_collector_support import Collector, Sent, assert_delivered, collector_settings, event, read_kafka

from harness import RoleProcess, ServiceFault, TestEnv, devstack, free_port


class Client(threading.Thread):
    """Sends batches of events until stopped or the collector goes away; remembers what was acknowledged
    and how long each answer took."""

    def __init__(self, c: Collector, run: str, mode: str, batch: int = 20, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.c, self.run_id, self.mode, self.batch, self.pause = c, run, mode, batch, pause
        self.acked: list[Sent] = []
        self.answers: list[tuple[float, float]] = []     # (when, seconds)
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.error: Exception | None = None

    def events(self, n: int) -> tuple[list[bytes], list[Sent]]:
        pairs = [event(n + i, f"{self.run_id}-{self.mode}", cost=f"0.{(n + i) % 997:06d}") for i in range(self.batch)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def run(self) -> None:
        try:
            (self._http if self.mode == "http" else self._tcp)()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.error = exc      # the collector was killed under us: expected

    def _http(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.c.http_port, timeout=30)
        n = 0
        while not self.stop.is_set():
            lines, sent = self.events(n)
            t0 = time.monotonic()
            status, doc = self.c.post(lines, conn=conn)
            self.answers.append((t0, time.monotonic() - t0))
            self.statuses.append(status)
            if status == 202:
                assert doc["accepted"] == len(lines), doc
                self.acked.extend(sent)
                n += len(lines)
            time.sleep(self.pause)

    def _tcp(self) -> None:
        with socket.create_connection(("127.0.0.1", self.c.tcp_port), timeout=30) as s:
            reader = s.makefile("rb")
            n = 0
            while not self.stop.is_set():
                lines, sent = self.events(n)
                s.sendall(b"".join(x + b"\n" for x in lines))
                got = 0
                while got < len(lines):     # answers cover the lines in order
                    answer = _json_line(reader.readline())
                    assert not answer["rejected"] and not answer.get("refused"), answer
                    self.acked.extend(sent[got:got + answer["accepted"]])
                    got += answer["accepted"]
                n += len(lines)
                time.sleep(self.pause)


def _json_line(raw: bytes) -> dict:
    import json
    if not raw:
        raise ConnectionError("collector closed the connection")
    return json.loads(raw)


def wait_until(pred: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred() and time.monotonic() < end:
        time.sleep(0.05)


def test_kill9_mid_stream_then_restart_loses_no_acknowledged_event(env: TestEnv,
                                                                  processes: list[RoleProcess]) -> None:
    c = Collector(env, processes, collector_settings(env))
    c.ensure_topics()
    c.start()
    clients = [Client(c, env.id, "http"), Client(c, env.id, "tcp")]
    for cl in clients:
        cl.start()
    wait_until(lambda: all(len(cl.acked) >= 400 for cl in clients), 60)
    c.proc.kill9()
    for cl in clients:
        cl.stop.set()
        cl.join(30)
    acked = [s for cl in clients for s in cl.acked]
    assert all(len(cl.acked) >= 400 for cl in clients), [len(cl.acked) for cl in clients]
    c.start()
    c.wait_drained()
    got = assert_delivered(env, acked, exactly_once=False)
    ids = [r["id"] for _, _, r in got]
    assert len(set(ids)) >= len(acked)      # resends after the crash may repeat ids, never lose one


def test_kafka_stopped_and_restarted_during_a_stream(env: TestEnv, processes: list[RoleProcess]) -> None:
    c = Collector(env, processes, collector_settings(env))
    c.ensure_topics()
    with ServiceFault("kafka"):
        c.start()
        client = Client(c, env.id, "http", batch=10, pause=0.02)
        client.start()
        wait_until(lambda: len(client.acked) >= 200, 30)
        down_at = time.monotonic()
        devstack("kill", "kafka")
        time.sleep(5)                                   # Kafka is down: answers must keep coming
        up_at = time.monotonic()
        devstack("up", "kafka")
        after = len(client.acked)
        wait_until(lambda: len(client.acked) >= after + 200, 60)
        client.stop.set()
        client.join(30)
        assert client.error is None, client.error
        during = [secs for when, secs in client.answers if down_at <= when <= up_at]
        assert len(during) > 20 and max(during) < 1.0, (len(during), max(during, default=None))
        assert set(client.statuses) == {202}
        c.wait_drained(timeout=180)
    assert_delivered(env, client.acked, exactly_once=False)


def test_disk_cap_refuses_with_503_and_keeps_every_accepted_event(env: TestEnv,
                                                                  processes: list[RoleProcess]) -> None:
    settings = collector_settings(env, queue={"segment_size": "64KiB", "max_size": "256KiB"},
                                  max_body_size="64KiB")
    c = Collector(env, processes, settings)
    c.ensure_topics()
    real_kafka = settings["kafka"]["bootstrap_servers"]
    settings["kafka"]["bootstrap_servers"] = [f"127.0.0.1:{free_port()}"]   # nobody there: Kafka is "down"
    c.config = env.write_config(settings)
    c.start(connected=False)
    accepted: list[Sent] = []
    n = 0
    for size in (25, 1):        # big batches until one is refused, then single events until full
        while True:
            lines, sent = zip(*(event(n + i, env.id) for i in range(size)))
            status, doc = c.post(list(lines))
            n += size
            if status == 503:
                break
            assert status == 202 and doc["accepted"] == size
            accepted.extend(sent)
            assert n < 20_000, "the cap was never reached"
        assert doc["accepted"] == 0 and doc["refused"] == size and "full" in doc["error"]
    assert c.health()["status"].startswith("refusing")
    tcp_answer = c.stream([event(99_999, env.id)[0]])
    assert tcp_answer[0]["refused"] == 1
    assert "REFUSING EVENTS" in c.proc.log()
    assert len(accepted) > 300
    assert c.proc.terminate() == 0
    assert "accepted events wait in the queue" in c.proc.log()

    settings["kafka"]["bootstrap_servers"] = real_kafka
    c.config = env.write_config(settings)
    c.start()
    c.wait_drained()
    assert_delivered(env, accepted)
    assert len(read_kafka(env, len(accepted), 5)) == len(accepted)
