"""What every connection-oriented input (HTTP, TCP, unix stream) shares: a connection limit, the
idle timeout, reading paused while an answer waits (for an fsync, for a slow reader of answers),
and the memory budget for request bodies.

Slow or stuck clients cannot exhaust the collector: at most ``max_connections`` are open (more are
closed at once), a connection that sends nothing for ``idle_timeout`` is closed, a client that does
not read its answers stops being read, and bodies in memory are bounded by :class:`BodyBudget`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)


class Connections:
    """The open connections of every input, for the limit and the idle sweep."""

    def __init__(self, max_connections: int, idle_timeout: float) -> None:
        self.max, self.idle_timeout = max_connections, idle_timeout
        self.open: set["Connection"] = set()
        self.refused = 0
        self._refused_logged = 0.0

    def admit(self, conn: "Connection") -> bool:
        if len(self.open) >= self.max:
            self.refused += 1
            now = time.monotonic()
            if now - self._refused_logged > 10:
                log.warning("connection limit (%d) reached: new connections are closed (%d so far)",
                            self.max, self.refused)
                self._refused_logged = now
            return False
        self.open.add(conn)
        return True

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than ``idle_timeout`` (not those waiting on us)."""
        for conn in [c for c in self.open if not c.waiting and now - c.last_active > self.idle_timeout]:
            conn.close_idle()

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.shutdown()

    def busy(self) -> int:
        """Connections with an answer still to give."""
        return sum(1 for c in self.open if c.waiting)


class Connection(asyncio.Protocol):
    """Base of the stream protocols: admission, activity time, and pausing.

    Reading is paused while ``waiting`` (an answer awaits its fsync or body budget) or while the
    transport's write buffer is above its high-water mark (the client does not read answers)."""

    input_name = ""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.last_active = time.monotonic()
        self.waiting = 0
        self._write_paused = False
        self._reading_paused = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.connections.admit(self):
            transport.abort()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.open.discard(self)
        self.closing = True

    def touch(self) -> None:
        self.last_active = time.monotonic()

    # -- pausing -------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def begin_wait(self) -> None:
        self.waiting += 1
        self._update_reading()

    def end_wait(self) -> None:
        self.waiting -= 1
        self.touch()
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self.closing:
            return
        pause = bool(self.waiting) or self._write_paused
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
                self.on_resumed()

    def on_resumed(self) -> None:
        """Reading resumed: process what was buffered meanwhile (HTTP pipelining)."""

    # -- closing -------------------------------------------------------------------------------

    def close_idle(self) -> None:
        log.debug("%s: closing a connection idle for %.0fs", self.input_name, self.connections.idle_timeout)
        self.shutdown()

    def shutdown(self) -> None:
        """Close after what was written is flushed."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class BodyBudget:
    """Bytes of request bodies held in memory at once, reserved before a body is read (FIFO).

    A reservation is for the whole body (Content-Length, or the body limit when chunked), so a
    body that started being read always completes — no two half-read bodies can wait on each other."""

    def __init__(self, total: int) -> None:
        self.total = self.free = total
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()

    def reserve(self, size: int, granted: Callable[[], None]) -> bool:
        """True if reserved now; otherwise ``granted()`` is called once it is (then reserved)."""
        if not self._waiters and size <= self.free:
            self.free -= size
            return True
        self._waiters.append((size, granted))
        return False

    def release(self, size: int) -> None:
        self.free += size
        while self._waiters and self._waiters[0][0] <= self.free:
            size, granted = self._waiters.popleft()
            self.free -= size
            granted()

    def cancel(self, granted: Callable[[], None]) -> None:
        """Forget a waiter (its connection closed)."""
        self._waiters = deque(w for w in self._waiters if w[1] != granted)   # bound methods: ==, not is
        self.release(0)
