"""Load generators and the Kafka arrival clock, shared by the collector and replay benchmarks.

- :func:`blast_tcp` sends NDJSON as fast as the socket takes it.
- :func:`http_requests` drives ``POST /v1/events`` over keep-alive connections, either as fast as
  answers come (``rate=None``) or open-loop at a fixed rate, each latency measured from the
  request's *scheduled* time (so a stalled server is not hidden: no coordinated omission).
- :func:`paced_tcp` sends lines at a fixed rate and notes when each id was sent;
  :class:`Arrivals` notes when each id shows up in Kafka. Ids are found in the message bytes
  whatever the encoding (raw JSON from the peers, Avro from eventd: strings are stored as is).
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

CHUNK = 256 * 1024


def chunks(lines: list[bytes], size: int = CHUNK) -> list[bytes]:
    """Lines joined with newlines into pieces of about ``size`` bytes (whole lines only)."""
    out, cur, n = [], [], 0
    for line in lines:
        cur.append(line)
        n += len(line) + 1
        if n >= size:
            out.append(b"\n".join(cur) + b"\n")
            cur, n = [], 0
    if cur:
        out.append(b"\n".join(cur) + b"\n")
    return out


def blast_tcp(port: int, pieces: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        for piece in pieces:
            s.sendall(piece)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        try:   # wait for the server to close (it has read everything) — or give up quietly
            while s.recv(65536):
                pass
        except OSError:
            pass


def paced_tcp(port: int, lines: list[bytes], ids: list[int], rate: float) -> dict[int, float]:
    """Send ``lines`` at ``rate`` per second over one connection; {id: perf_counter at send}."""
    sent: dict[int, float] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        # Read the server's answers while sending: unread answers would first stall its writes,
        # and closing with them unread makes the kernel reset the connection, discarding lines the
        # server had not read yet (never acknowledged, so "not seen" without any loss).
        reader = threading.Thread(target=_drain, args=(s,), daemon=True)
        reader.start()
        t0, i = time.perf_counter(), 0
        while i < len(lines):
            due = min(len(lines), int((time.perf_counter() - t0) * rate) + 1)
            if due > i:
                s.sendall(b"\n".join(lines[i:due]) + b"\n")
                now = time.perf_counter()
                for k in range(i, due):
                    sent[ids[k]] = now
                i = due
            else:
                time.sleep(0.0005)
        s.shutdown(socket.SHUT_WR)
        reader.join(60)     # the server closes once it has read and answered everything
    return sent


def _drain(s: socket.socket) -> None:
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


class Arrivals:
    """A consumer thread reading ``topics`` from their current end, noting when each id arrives."""

    def __init__(self, topics: list[str], tag: str, bootstrap: str = "127.0.0.1:9092") -> None:
        from kafka import KafkaConsumer, TopicPartition
        self._re = re.compile(re.escape(tag.encode()) + rb"-(\d+)")
        self._c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=5, fetch_min_bytes=1)
        tps = [TopicPartition(t, p) for t in topics for p in sorted(self._c.partitions_for_topic(t) or ())]
        self._c.assign(tps)
        self._c.seek_to_end()
        for tp in tps:
            self._c.position(tp)
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self._c.poll(timeout_ms=20).values():
                now = time.perf_counter()
                for r in records:
                    m = self._re.search(r.value)
                    if m:
                        self.seen.setdefault(int(m.group(1)), now)

    def wait(self, ids: set[int], timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not ids <= self.seen.keys():
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._c.close()


def latencies_ms(sent: dict[int, float], seen: dict[int, float]) -> tuple[list[float], int]:
    """Latency of each id seen, and how many sent ids were never seen."""
    lat = [(seen[i] - t) * 1000 for i, t in sent.items() if i in seen]
    return lat, len(sent) - len(lat)


# ------------------------------------------------------------------------------------------------------ HTTP

@dataclass
class HttpOutcome:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0


class _Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.scheduled = 0.0

    def response(self) -> tuple[int, bool] | None:
        """(status, server closes) once a whole response is buffered, else None."""
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = self.buf[:head_end].decode("latin-1").split("\r\n")
        length, close = 0, False
        for h in head[1:]:
            k, _, v = h.partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "connection" and v.strip().lower() == "close":
                close = True
        if len(self.buf) < head_end + 4 + length:
            return None
        self.buf = self.buf[head_end + 4 + length:]
        return int(head[0].split()[1]), close


def request(body: bytes) -> bytes:
    return (b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def http_requests(port: int, bodies: list[bytes], rate: float | None, connections: int,
                  timeout: float = 600) -> HttpOutcome:
    """Send each body once; open-loop at ``rate`` requests/s, or as fast as answers come."""
    reqs = deque(request(b) for b in bodies)
    free = [_Conn(port) for _ in range(connections)]
    busy: dict[int, _Conn] = {}
    out, scheduled = HttpOutcome(), deque()
    poller = select.epoll()
    t0 = time.perf_counter()
    n_sched = 0
    while reqs or scheduled or busy:
        now = time.perf_counter()
        if now - t0 > timeout:
            raise TimeoutError(f"HTTP load: {len(busy) + len(scheduled) + len(reqs)} requests unanswered")
        due = len(bodies) if rate is None else min(len(bodies), int((now - t0) * rate) + 1)
        while n_sched < due:
            scheduled.append(t0 + n_sched / rate if rate else now)
            n_sched += 1
        while scheduled and free:
            c = free.pop()
            c.scheduled = scheduled.popleft()
            c.sock.setblocking(True)
            c.sock.sendall(reqs.popleft())
            c.sock.setblocking(False)
            busy[c.sock.fileno()] = c
            poller.register(c.sock.fileno(), select.EPOLLIN)
        for fd, _ in poller.poll(0.0005 if rate else 0.05):
            c = busy[fd]
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("collector closed a connection mid-request")
            c.buf += data
            got = c.response()
            if got is None:
                continue
            done = time.perf_counter()
            out.latencies_ms.append((done - c.scheduled) * 1000)
            out.statuses[got[0]] += 1
            poller.unregister(fd)
            del busy[fd]
            if got[1]:
                c.sock.close()
                c = _Conn(port)
            free.append(c)
    out.seconds = time.perf_counter() - t0
    for c in free:
        c.sock.close()
    poller.close()
    return out
