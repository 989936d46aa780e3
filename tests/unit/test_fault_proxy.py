"""The fault proxy of the fault-injection suite, against a local echo server on loopback: pass-through,
latency, reset, blackhole, close, large payloads and many connections."""

from __future__ import annotations

import hashlib
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from faults.proxy import FaultProxy

# A hang must fail in seconds, not after the suite-wide 900 s.
pytestmark = pytest.mark.timeout(15)


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every byte back; closes after the client's FIN. Records how each connection ended."""

    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 drops SYNs when many proxied connections arrive together; the retry after 1 s
    # would make the many-connections test depend on timing.
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.accepted = 0
        self.endings: list[str] = []  # "eof" or "reset", one per finished connection
        self.lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.server_address[1]


class EchoHandler(socketserver.BaseRequestHandler):
    server: EchoServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.accepted += 1
        ending = "eof"
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            ending = "reset"
        with self.server.lock:
            self.server.endings.append(ending)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.address) as p:
        yield p


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return recv_exactly(sock, len(data))


def assert_reset(sock: socket.socket) -> None:
    """The connection was aborted: reading gives ConnectionResetError, or EOF if the FIN won the race."""
    try:
        got = sock.recv(1)
    except ConnectionResetError:
        return
    assert got == b"", f"expected a reset connection, read {got!r}"


def assert_new_connection_reset(proxy: FaultProxy) -> None:
    """A new connection is reset: the RST may even beat connect()'s return on loopback, or come at first read."""
    try:
        sock = connect(proxy)
    except ConnectionResetError:
        return
    with sock:
        assert_reset(sock)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_pass_through_forwards_bytes_unchanged(proxy: FaultProxy) -> None:
    assert proxy.mode == "pass"
    with connect(proxy) as sock:
        for i in range(20):
            msg = b"message %d " % i * (i + 1)
            assert round_trip(sock, msg) == msg
    total = sum(len(b"message %d " % i * (i + 1)) for i in range(20))
    wait_until(lambda: proxy.stats["open"] == 0, "the proxied connection to finish")
    stats = proxy.stats
    assert (stats["accepted"], stats["bytes_up"], stats["bytes_down"], stats["resets"]) == (1, total, total, 0)


def test_half_close_is_forwarded(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert recv_exactly(sock, 10) == b"last words"
        assert sock.recv(1) == b""  # the echo server's FIN came back through the proxy
    wait_until(lambda: echo.endings == ["eof"], "the echo server to see a clean EOF")


def stream_through(proxy: FaultProxy, payload: bytes) -> bytes:
    """Send payload through the echo and half-close; return everything read back until EOF."""
    received = bytearray()
    with connect(proxy, timeout=10) as sock:
        # Write from a thread while reading here: echoed bytes must be drained or both ends stall on full buffers.
        def write() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write)
        writer.start()
        while chunk := sock.recv(1 << 20):
            received += chunk
        writer.join()
    return bytes(received)


def test_large_payload_passes_intact_both_ways(proxy: FaultProxy) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    received = stream_through(proxy, payload)
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    stats = proxy.stats
    assert stats["bytes_up"] == stats["bytes_down"] == len(payload)


def test_large_payload_passes_intact_under_latency(proxy: FaultProxy) -> None:
    # More than the proxy buffers per direction, so reading pauses and resumes while chunks wait their turn.
    proxy.latency(0.05)
    payload = os.urandom(3 * 1024 * 1024)
    received = stream_through(proxy, payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_many_concurrent_connections_each_get_their_own_bytes(proxy: FaultProxy, echo: EchoServer) -> None:
    count = 60
    socks = [connect(proxy) for _ in range(count)]
    try:
        # All are open at once, and each conversation interleaves with the others.
        def talk(i: int) -> bool:
            msgs = [b"conn %d part %d|" % (i, n) * 50 for n in range(5)]
            return all(round_trip(socks[i], m) == m for m in msgs)

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert all(pool.map(talk, range(count)))
        assert proxy.stats["accepted"] == count
        assert proxy.stats["open"] == count
        assert echo.accepted == count
    finally:
        for sock in socks:
            sock.close()


def test_latency_delays_each_direction_for_open_and_new_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as before:
        assert round_trip(before, b"warm") == b"warm"
        proxy.latency(0.3)
        assert proxy.mode == "latency"
        with connect(proxy) as after:
            for sock in (before, after):
                start = time.monotonic()
                # Three separate writes: order is kept and nothing is merged wrongly or lost.
                for part in (b"one,", b"two,", b"three"):
                    sock.sendall(part)
                assert recv_exactly(sock, 13) == b"one,two,three"
                # 0.3 s up plus 0.3 s down; a lower bound only, the machine may be slow.
                assert time.monotonic() - start >= 0.6
        proxy.pass_through()
        assert round_trip(before, b"fast again") == b"fast again"


def test_a_stalled_delayed_connection_does_not_hold_up_others(proxy: FaultProxy) -> None:
    proxy.latency(0.2)
    with connect(proxy) as stalled, connect(proxy, timeout=5) as other:
        # Write without ever reading back until the stack refuses more: the proxy now holds a full queue
        # for this connection and has stopped reading from it (backpressure).
        stalled.setblocking(False)
        with pytest.raises(BlockingIOError):
            while True:
                stalled.send(b"s" * 65536)
        start = time.monotonic()
        assert round_trip(other, b"still flowing") == b"still flowing"
        assert time.monotonic() - start >= 0.4  # delayed like everything else, but not stuck


def test_latency_rejects_negative_or_infinite_seconds(proxy: FaultProxy) -> None:
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            proxy.latency(bad)
    assert proxy.mode == "pass"


def test_reset_aborts_open_connections_on_both_sides_and_new_ones(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as open_conn:
        assert round_trip(open_conn, b"hello") == b"hello"
        proxy.reset()
        assert proxy.mode == "reset"
        assert_reset(open_conn)
        wait_until(lambda: echo.endings == ["reset"], "the echo server to see an RST")
        assert_new_connection_reset(proxy)  # the handshake succeeds, then the proxy resets it
        assert echo.accepted == 1  # the new connection never reached the target
    stats = proxy.stats
    assert (stats["resets"], stats["accepted"]) == (3, 2), stats
    proxy.pass_through()
    with connect(proxy) as again:
        assert round_trip(again, b"back") == b"back"


def test_blackhole_swallows_everything_then_resets_its_victims(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as old:
        assert round_trip(old, b"ping") == b"ping"
        proxy.blackhole()
        assert proxy.mode == "blackhole"
        with connect(proxy) as new:  # connect succeeds…
            for sock in (old, new):
                # …writes succeed, even far more than socket buffers hold, because the proxy drains them…
                sock.settimeout(3)
                sock.sendall(b"x" * (8 * 1024 * 1024))
                # …and nothing ever comes back.
                sock.settimeout(0.3)
                with pytest.raises(socket.timeout):
                    sock.recv(1)
            assert echo.accepted == 1  # the connection made in the blackhole never reached the target
            up_before = proxy.stats["bytes_up"]
            proxy.pass_through()
            # A blackhole loses state: its connections are dead even though the path is back.
            for sock in (old, new):
                sock.settimeout(2)
                assert_reset(sock)
        assert proxy.stats["bytes_up"] == up_before == 4
        wait_until(lambda: echo.endings == ["reset"], "the target side of the blackholed connection to be reset")
    with connect(proxy) as fresh:
        assert round_trip(fresh, b"alive") == b"alive"


def test_connection_refused_by_target_is_reset_towards_client() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_target = placeholder.getsockname()  # bound but not listening: connects are refused
        with FaultProxy(dead_target) as proxy:
            assert_new_connection_reset(proxy)
            wait_until(lambda: proxy.stats["open"] == 0, "the refused connection to be dropped")


def test_close_frees_the_port_ends_the_thread_and_is_idempotent(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.address).start()
    port = proxy.port
    sock = connect(proxy)
    assert round_trip(sock, b"before close") == b"before close"
    proxy.close()
    assert not [t for t in threading.enumerate() if t.name == f"fault-proxy-{port}"]
    assert_reset(sock)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with socket.socket() as rebind:  # no SO_REUSEADDR: the port must be truly free
        rebind.bind(("127.0.0.1", port))
    proxy.close()
    proxy.pass_through()  # harmless after close
    assert proxy.stats["open"] == 0


def test_mode_set_before_start_applies_from_the_first_connection(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.address)
    proxy.reset()
    with proxy:
        assert_new_connection_reset(proxy)
    assert echo.accepted == 0
