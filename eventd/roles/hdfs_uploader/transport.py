"""One HTTP request with a deadline that really holds.

A socket timeout bounds each blocking read or write, not the exchange: a server that trickles
one byte per timeout, or a DataNode that accepts a connection and never answers, could hold a
caller far longer. Here every exchange has a total deadline: connecting is bounded by the
socket timeout, and a watchdog timer shuts the socket down when the deadline passes, which
wakes any blocked ``send``/``recv`` at once. (Name resolution is not covered: WebHDFS
redirects to the DataNode's configured address, an IP on the usual set-ups.)

Every request uses a new connection: a call that failed half-way never leaves a half-read
response on a connection someone else would reuse.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from eventd.errors import EventdError

MAX_ANSWER = 1 << 20   # WebHDFS answers are small JSON documents; anything larger is an error


class TransportError(EventdError):
    """The exchange failed: connection refused or reset, malformed answer, or timed out."""


class DeadlineExceeded(TransportError):
    """The exchange did not finish within its deadline."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]   # lower-case names
    body: bytes


class _Watchdog:
    """Shuts ``sock`` down at ``deadline`` unless cancelled first."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.fired = False
        self._sock = sock
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass   # already closed: the exchange is over anyway

    def cancel(self) -> None:
        self._timer.cancel()


def exchange(host: str, port: int, method: str, target: str, deadline: float,
             body: Iterable[bytes] | None = None, length: int | None = None) -> Answer:
    """Send one request (``body`` streamed chunk by chunk, ``length`` bytes) and read the answer,
    all before the monotonic ``deadline``; raises :class:`TransportError` otherwise."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded(f"{method} {host}:{port}: no time left")
    conn = http.client.HTTPConnection(host, port, timeout=remaining)
    try:
        conn.connect()
    except OSError as exc:
        conn.close()
        kind = DeadlineExceeded if isinstance(exc, TimeoutError) else TransportError
        raise kind(f"{method} {host}:{port}: cannot connect: {exc}") from None
    assert conn.sock is not None
    watchdog = _Watchdog(conn.sock, deadline)
    try:
        return _send_and_read(conn, method, target, body, length, deadline)
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired or isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
            raise DeadlineExceeded(f"{method} {host}:{port}: no complete answer within the deadline") from None
        raise TransportError(f"{method} {host}:{port}: {type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        conn.close()


def _send_and_read(conn: http.client.HTTPConnection, method: str, target: str, body: Iterable[bytes] | None,
                   length: int | None, deadline: float) -> Answer:
    conn.putrequest(method, target, skip_accept_encoding=True)
    conn.putheader("Content-Length", str(length or 0))
    if body is not None:
        conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    sent = 0
    for chunk in body or ():
        if time.monotonic() >= deadline:
            raise TimeoutError("deadline passed while sending")
        conn.send(chunk)
        sent += len(chunk)
    if length is not None and sent != length:
        raise http.client.HTTPException(f"sent {sent} bytes, announced {length}")
    resp = conn.getresponse()
    data = resp.read(MAX_ANSWER + 1)
    if len(data) > MAX_ANSWER:
        raise http.client.HTTPException(f"answer larger than {MAX_ANSWER} bytes")
    return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
