"""The collector's inputs on loopback (HTTP, TCP, unix stream, UDP, unix datagram) against a real
queue: answers, limits, timeouts, and what ends up in the queue. Kafka is not involved."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from collector_support import CFG, good, line, make_intake, queued

from eventd.config.collector import SocketInput
from eventd.errors import CannotStart
from eventd.roles.collector import server as server_mod
from eventd.roles.collector.intake import Intake
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.server import Server
from eventd.roles.collector.syncer import Syncer


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    http: int
    tcp: int
    udp: int
    unix: str
    dgram: str
    queue: DurableQueue
    intake: Intake
    syncer: Syncer
    server: Server
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)


def start_collector(tmp_path: Path, fsync: str = "never", cap: int = 1 << 24, **overrides: Any) -> Running:
    ports = (free_port(), free_port(), free_port(socket.SOCK_DGRAM))
    unix, dgram = str(tmp_path / "c.sock"), str(tmp_path / "c.dgram")
    cfg = replace(CFG.collector, http=SocketInput(True, "127.0.0.1", ports[0]),
                  tcp=SocketInput(True, "127.0.0.1", ports[1]), udp=SocketInput(True, "127.0.0.1", ports[2]),
                  unix=SocketInput(True, path=unix, mode=0o660), unix_datagram=SocketInput(True, path=dgram),
                  **overrides)
    intake, q = make_intake(tmp_path / "q", cap=cap)
    syncer = Syncer(q, fsync, 0.05)
    syncer.start()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    status = lambda: (503 if intake.full else 200, {"status": "full" if intake.full else "ok"})  # noqa: E731
    srv_box: list[Server] = []

    async def make() -> None:
        srv_box.append(Server(cfg, 0, intake, syncer, status, CFG.events.max_line_size, None))
        await srv_box[0].start()

    asyncio.run_coroutine_threadsafe(make(), loop).result(10)
    return Running(ports[0], ports[1], ports[2], unix, dgram, q, intake, syncer, srv_box[0], loop)


def stop_collector(r: Running) -> None:
    r.run(r.server.close())
    r.loop.call_soon_threadsafe(r.loop.stop)
    r.syncer.stop()
    r.queue.close()


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Running]:
    r = start_collector(tmp_path)
    yield r
    stop_collector(r)


def http(port: int, raw: bytes, read_until_close: bool = False, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        if read_until_close:
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out
        return read_response(s)


def read_response(s: socket.socket, buffered: bytearray | None = None) -> bytes:
    """One response; bytes read past it stay in ``buffered`` for the next call."""
    buf = buffered if buffered is not None else bytearray()
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
    end = len(head) + 4 + length
    while len(buf) < end:
        buf += s.recv(65536)
    out = bytes(buf[:end])
    del buf[:end]
    return out


def post(body: bytes, ctype: str = "application/x-ndjson", extra: str = "") -> bytes:
    return (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


def status_and_json(resp: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = resp.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


# ---------------------------------------------------------------------------------------------------- HTTP

def test_http_ndjson_mixed_good_and_bad(c: Running) -> None:
    code, doc = status_and_json(http(c.http, post(good(0) + b"\n{oops\n" + good(1) + b"\n")))
    assert code == 202
    assert doc["accepted"] == 2 and doc["rejected"] == 1
    assert doc["errors"][0]["line"] == 2 and doc["errors"][0]["error"].startswith("not valid JSON")
    assert [r["campaign_id"] for _, _, r in queued(c.queue)] == [100, 101]
    assert {r["input"] for _, _, r in queued(c.queue)} == {"http"}


def test_http_single_pretty_printed_object_and_ndjson_as_application_json(c: Running) -> None:
    pretty = json.dumps(json.loads(good(5)), indent=2).encode()
    assert status_and_json(http(c.http, post(pretty, "application/json")))[1]["accepted"] == 1
    assert status_and_json(http(c.http, post(good(6) + b"\n" + good(7), "application/json")))[1]["accepted"] == 2
    assert [r["campaign_id"] for _, _, r in queued(c.queue)] == [105, 106, 107]


def test_http_chunked_with_expect_continue(c: Running) -> None:
    body = good(1) + b"\n" + good(2) + b"\n"
    with socket.create_connection(("127.0.0.1", c.http), timeout=5) as s:
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:]))
        code, doc = status_and_json(read_response(s))
    assert code == 202 and doc["accepted"] == 2


def test_http_keep_alive_and_pipelining_answer_in_order(c: Running) -> None:
    with socket.create_connection(("127.0.0.1", c.http), timeout=5) as s:
        s.sendall(post(good(1)) + post(b"bad") + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        buffered = bytearray()
        answers = [status_and_json(read_response(s, buffered)) for _ in range(3)]
    assert answers[0] == (202, {"accepted": 1, "rejected": 0, "errors": []})
    assert answers[1][1]["rejected"] == 1
    assert answers[2] == (200, {"status": "ok"})


def test_http_limits_and_errors(c: Running) -> None:
    big = len(post(b"")) and CFG.collector.max_body_size + 1
    resp = http(c.http, f"POST /v1/events HTTP/1.1\r\nContent-Length: {big}\r\n\r\n".encode(), read_until_close=True)
    assert resp.startswith(b"HTTP/1.1 413") and b"Connection: close" in resp
    assert http(c.http, b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert http(c.http, b"GET /v1/events HTTP/1.1\r\n\r\n", read_until_close=True).startswith(b"HTTP/1.1 405")
    assert http(c.http, b"garbage\r\n\r\n", read_until_close=True).startswith(b"HTTP/1.1 400")
    assert http(c.http, b"GET / HTTP/2.0\r\n\r\n", read_until_close=True).startswith(b"HTTP/1.1 505")
    resp = http(c.http, b"POST /v1/events HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                read_until_close=True)
    assert resp.startswith(b"HTTP/1.1 400") and b"conflicting content-length" in resp
    assert queued(c.queue) == []


def test_http_queue_full_is_503_and_nothing_of_the_request_is_taken(tmp_path: Path) -> None:
    r = start_collector(tmp_path, cap=1 << 17, max_body_size=1 << 16)
    try:
        accepted = 0
        while True:
            code, doc = status_and_json(http(r.http, post(good(1))))
            if code == 503:
                break
            accepted += doc["accepted"]
        assert doc["accepted"] == 0 and doc["refused"] == 1 and "full" in doc["error"]
        resp = http(r.http, post(good(3) + b"\n" + good(4) + b"\nbad"))
        assert status_and_json(resp)[1]["refused"] == 2 and status_and_json(resp)[1]["rejected"] == 1
        assert resp.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in resp
        assert http(r.http, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503")
        assert len(queued(r.queue)) == accepted
    finally:
        stop_collector(r)


def test_http_answers_after_fsync_under_always(tmp_path: Path) -> None:
    r = start_collector(tmp_path, fsync="always")
    try:
        for i in range(3):
            code, doc = status_and_json(http(r.http, post(good(i))))
            assert code == 202 and doc["accepted"] == 1
            assert r.syncer.synced >= r.queue.next_seq     # answered only once on disk
    finally:
        stop_collector(r)


def test_idle_connections_are_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_mod, "SWEEP_INTERVAL", 0.05)
    r = start_collector(tmp_path, idle_timeout=0.2)
    try:
        with socket.create_connection(("127.0.0.1", r.http), timeout=5) as s:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")   # then stalls
            t0 = time.monotonic()
            assert s.recv(100) == b""
            assert time.monotonic() - t0 < 3
    finally:
        stop_collector(r)


def test_connection_limit(tmp_path: Path) -> None:
    r = start_collector(tmp_path, max_connections=2)
    try:
        held = [socket.create_connection(("127.0.0.1", r.http), timeout=5) for _ in range(2)]
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", r.http), timeout=5) as extra:
            try:
                closed = extra.recv(10) == b""
            except ConnectionResetError:
                closed = True
        assert closed
        held[0].sendall(post(good(1)))
        assert status_and_json(read_response(held[0]))[0] == 202
        for s in held:
            s.close()
    finally:
        stop_collector(r)


# ---------------------------------------------------------------------------------------------------- streams

def stream_exchange(sock: socket.socket, data: bytes) -> list[dict[str, Any]]:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return [json.loads(x) for x in out.splitlines()]


def test_tcp_answers_cover_every_line_in_order(c: Running) -> None:
    with socket.create_connection(("127.0.0.1", c.tcp), timeout=5) as s:
        answers = stream_exchange(s, good(1) + b"\nnope\n" + b"x" * 2_000_000 + b"\n" + good(2))
    assert sum(a["accepted"] for a in answers) == 2
    errors = [e for a in answers for e in a["errors"]]
    assert [e["line"] for e in errors] == [2, 3]
    assert errors[1]["error"] == "line of 2000000 bytes is over the limit of 1048576"
    got = queued(c.queue)
    assert [(r["campaign_id"], r["input"]) for _, _, r in got] == [(101, "tcp"), (102, "tcp")]


def test_tcp_lines_split_across_packets(c: Running) -> None:
    data = b"".join(good(i) + b"\n" for i in range(20))
    with socket.create_connection(("127.0.0.1", c.tcp), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 7):
            s.sendall(data[i:i + 7])
        answers = stream_exchange(s, b"")
    assert sum(a["accepted"] for a in answers) == 20 and not any(a["errors"] for a in answers)
    assert [r["campaign_id"] for _, _, r in queued(c.queue)] == list(range(100, 120))


def test_unix_stream_socket_mode_and_events(c: Running) -> None:
    assert stat.S_IMODE(os.stat(c.unix).st_mode) == 0o660
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(c.unix)
        answers = stream_exchange(s, good(3) + b"\n")
    assert answers == [{"accepted": 1, "rejected": 0, "errors": []}]
    assert queued(c.queue)[0][2]["input"] == "unix"


def test_tcp_refused_when_full(tmp_path: Path) -> None:
    r = start_collector(tmp_path, cap=1 << 17, max_body_size=1 << 16)
    try:
        while r.intake.ingest([good(0)], "tcp").accepted:
            pass
        with socket.create_connection(("127.0.0.1", r.tcp), timeout=5) as s:
            (answer,) = stream_exchange(s, good(1) + b"\nbad\n")
        assert answer["refused"] == 1 and answer["rejected"] == 1 and answer["accepted"] == 0
        assert "full" in answer["error"]
    finally:
        stop_collector(r)


def test_datagrams(c: Running) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(good(1), ("127.0.0.1", c.udp))
        u.sendto(b"not json", ("127.0.0.1", c.udp))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as d:
        d.sendto(good(2) + b"\n", c.dgram)
    deadline = time.monotonic() + 5
    while len(queued(c.queue)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    got = sorted((r["campaign_id"], r["input"]) for _, _, r in queued(c.queue))
    assert got == [(101, "udp"), (102, "unix_datagram")]


def test_stale_unix_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                    # the file stays, nobody listens: what a crash leaves
    live = server_mod.unix_listener(path, 0o600, socket.SOCK_STREAM, "unix")
    with pytest.raises(CannotStart, match="in use"):
        server_mod.unix_listener(path, 0o600, socket.SOCK_STREAM, "unix")
    live.close()


def test_port_in_use_is_cannot_start() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(CannotStart, match="cannot listen"):
            server_mod.tcp_listener(SocketInput(True, "127.0.0.1", port), "http")


def test_two_processes_share_a_port_with_reuseport() -> None:
    port = free_port()
    a = server_mod.tcp_listener(SocketInput(True, "127.0.0.1", port), "tcp")
    b = server_mod.tcp_listener(SocketInput(True, "127.0.0.1", port), "tcp")
    a.close()
    b.close()


def test_line_helper_builds_json() -> None:
    assert json.loads(line(type="x", time=1)) == {"type": "x", "time": 1}


def test_body_budget_is_fifo_and_a_closed_waiter_is_forgotten() -> None:
    from eventd.roles.collector.connections import BodyBudget

    class Waiter:
        def __init__(self, name: str, log: list[str]) -> None:
            self.name, self.log = name, log

        def granted(self) -> None:
            self.log.append(self.name)

    log: list[str] = []
    budget = BodyBudget(100)
    assert budget.reserve(80, lambda: None)
    a, b, d = Waiter("a", log), Waiter("b", log), Waiter("d", log)
    assert not budget.reserve(50, a.granted)
    assert not budget.reserve(10, b.granted)      # would fit, but waits behind a (FIFO: no starvation)
    assert not budget.reserve(30, d.granted)
    budget.cancel(a.granted)                       # a's connection closed
    assert log == ["b"]
    budget.release(80)
    assert log == ["b", "d"] and budget.free == 60
