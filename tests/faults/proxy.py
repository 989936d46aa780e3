"""A small TCP fault proxy: it sits between an eventd role and one service (ClickHouse native, MariaDB, the HDFS
NameNode) on loopback and, on command, delays traffic, resets every connection or becomes a blackhole.

One thread runs a selector loop over the listening socket and every proxied socket, all non-blocking. One loop
rather than a thread per socket because a fault must land *at once*: closing a socket that another thread is
blocked in recv() on neither wakes that thread nor sends anything until it returns, and shutdown() (the usual way
to wake it) sends a FIN first, so the client would see a clean EOF instead of a reset. Here the thread that decides
is the thread that owns the sockets. Mode setters hand the change to the loop and return once it is applied.

Manual use: ``python3 tests/faults/proxy.py --listen 127.0.0.1:19000 --target 127.0.0.1:9000`` (pass-through
until Ctrl-C).
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import selectors
import signal
import socket
import struct
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)

Address = tuple[str, int]

CHUNK = 64 * 1024
# Per direction, at most this many bytes wait inside the proxy (for a latency deadline or a slow reader) before
# it stops reading from the sender: TCP backpressure instead of unbounded memory.
MAX_BUFFERED = 1 << 20
# Accepts per loop turn, so a connection storm cannot starve the traffic of established connections.
ACCEPT_BATCH = 64
# How long a mode change or close() waits for the loop; longer means the loop is wedged, which is a bug.
APPLY_TIMEOUT = 5.0
# SO_LINGER on with timeout 0: close() then discards unsent data and sends RST instead of FIN.
_LINGER_RST = struct.pack("ii", 1, 0)
_LISTENER = "listener"
_WAKE = "wake"
_CONNECTING = (0, errno.EINPROGRESS, errno.EWOULDBLOCK)


class _Side:
    """One socket of a proxied connection and the bytes waiting to be written to it, oldest first."""

    def __init__(self, conn: _Conn, sock: socket.socket, connected: bool, upstream: bool) -> None:
        self.conn = conn
        self.sock = sock
        self.connected = connected  # False while the non-blocking connect to the target is in progress
        self.upstream = upstream  # True for the socket to the target: bytes written to it count as "up"
        # (received_at, chunk); chunk None stands for the FIN, so a half-close is delayed and ordered like data.
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.queued = 0  # unsent bytes in queue
        self.offset = 0  # bytes of queue[0] already sent
        self.read_eof = False  # the peer behind this socket sent FIN
        self.write_shut = False  # we sent FIN to this socket
        self.blocked = False  # the last send() would have blocked: wait for EVENT_WRITE
        self.mask = 0  # selector events registered for sock (0 = not registered)


class _Conn:
    """A client connection and, unless it was born in a blackhole, its connection to the target."""

    def __init__(self, client_sock: socket.socket) -> None:
        self.client = _Side(self, client_sock, connected=True, upstream=False)
        self.server: _Side | None = None
        self.blackholed = False  # once True, only an abort ends it: a blackhole loses the connection's state
        self.closed = False

    def sides(self) -> list[_Side]:
        return [self.client] if self.server is None else [self.client, self.server]

    def other(self, side: _Side) -> _Side | None:
        return self.server if side is self.client else self.client


class FaultProxy:
    """A TCP proxy from ``listen`` to ``target`` whose faults can be switched while connections are open.

    Modes (``mode``), each applied to open and new connections alike before the setter returns:
      - ``"pass"``: bytes are forwarded both ways unchanged (the default);
      - ``"latency"``: every chunk, and the FIN, is forwarded ``seconds`` after it was received, order kept per
        direction; other connections are not held up;
      - ``"reset"``: every open connection is aborted with RST on both sides; new connections are accepted and
        reset at once; stays so until another mode is set;
      - ``"blackhole"``: connections stay open but nothing is forwarded or answered; bytes received are read and
        dropped so the senders' writes do not fail; new connections are accepted (the client's connect succeeds)
        and never reach the target. Leaving the blackhole aborts (RST) every connection that was in it.
    ``stats`` counts connections accepted, RSTs sent (one per socket), bytes forwarded up (to the target) and down,
    and the connections open now. A connection whose target refuses is reset towards the client.
    """

    def __init__(self, target: Address, listen: Address = ("127.0.0.1", 0)) -> None:
        self.target = target
        self.listen = listen
        self._cond = threading.Condition()
        # Guarded by _cond: what callers asked for, and how far the loop got.
        self._mode = "pass"
        self._latency = 0.0
        self._generation = 0
        self._applied = 0
        self._closing = False
        self._stopped = False
        self._crash: BaseException | None = None
        self._stats = {"accepted": 0, "resets": 0, "bytes_up": 0, "bytes_down": 0, "open": 0}
        self._thread: threading.Thread | None = None
        self._port = 0
        # Owned by the loop thread once started.
        self._active = "pass"
        self._delay = 0.0
        self._conns: set[_Conn] = set()
        self._pending: set[_Side] = set()
        self._target_family = socket.AF_INET
        self._target_addr: tuple[Any, ...] = target  # a sockaddr: (host, port) or IPv6's 4-tuple

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the listen address and start the loop thread; return self. Raises OSError if the address is in
        use and RuntimeError if already started or closed."""
        with self._cond:
            if self._thread is not None or self._closing:
                raise RuntimeError("FaultProxy.start() called twice or after close()")
        # Resolve once here: a name lookup inside the loop would stall every connection.
        family, _, _, _, addr = socket.getaddrinfo(*self.target, type=socket.SOCK_STREAM)[0]
        self._target_family, self._target_addr = family, addr
        listen_family = socket.getaddrinfo(*self.listen, type=socket.SOCK_STREAM)[0][0]
        # create_server sets SO_REUSEADDR, so a restarted proxy can rebind despite TIME_WAIT connections.
        self._listener = socket.create_server(self.listen, family=listen_family, backlog=128)
        self._listener.setblocking(False)
        self._port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        # Daemon: a test that forgets close() must not hang the interpreter's exit.
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self._port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, abort every connection (RST: in-flight data is lost, as when a real middlebox dies)
        and free the listen port; when it returns the loop thread has ended. Idempotent. Raises RuntimeError
        if the loop had crashed (a bug in the proxy must fail the test that used it)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            thread = self._thread
        if thread is not None:
            self._wake()
            thread.join(APPLY_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError("fault proxy loop did not stop")
        self._raise_if_crashed()

    def __enter__(self) -> Self:
        """Enter a started proxy (starting it if needed)."""
        return self if self._thread is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound listen port; RuntimeError before start()."""
        if not self._port:
            raise RuntimeError("FaultProxy.port is known only after start()")
        return self._port

    @property
    def mode(self) -> str:
        """The mode last set: "pass", "latency", "reset" or "blackhole"."""
        with self._cond:
            return self._mode

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters: accepted, resets (RSTs sent), bytes_up, bytes_down, open."""
        with self._cond:
            return dict(self._stats)

    # -- modes -----------------------------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward bytes both ways unchanged; aborts connections left in a blackhole."""
        self._set_mode("pass", 0.0)

    def latency(self, seconds: float) -> None:
        """Forward every chunk (either direction) ``seconds`` after it arrived; ValueError unless finite >= 0."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds!r}")
        self._set_mode("latency", float(seconds))

    def reset(self) -> None:
        """Abort every open connection with RST on both sides, and every new one as soon as it is accepted."""
        self._set_mode("reset", 0.0)

    def blackhole(self) -> None:
        """Forward and answer nothing, drop what arrives, keep connections open (see the class docstring)."""
        self._set_mode("blackhole", 0.0)

    def _set_mode(self, mode: str, delay: float) -> None:
        """Record the mode and, if the loop runs, wait until it has applied it to every connection."""
        with self._cond:
            self._mode, self._latency = mode, delay
            self._generation += 1
            generation = self._generation
            # Not started: the loop applies it first thing. Stopped: nothing is left to apply it to.
            applied = self._thread is None or self._stopped
            if not applied:
                self._wake()
                applied = self._cond.wait_for(lambda: self._applied >= generation or self._stopped, APPLY_TIMEOUT)
        self._raise_if_crashed()
        if not applied:
            raise RuntimeError(f"fault proxy loop did not apply mode {mode!r} within {APPLY_TIMEOUT} s")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # a full pipe already guarantees a wake-up; a closed one means the loop has ended

    def _raise_if_crashed(self) -> None:
        if self._crash is not None:
            raise RuntimeError("fault proxy loop crashed") from self._crash

    # -- the loop (everything below runs in the loop thread only) --------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                self._apply_mode()
                due = self._flush_pending()
                timeout = None if due is None else max(0.0, due - time.monotonic())
                for key, events in self._sel.select(timeout):
                    self._dispatch(key.data, events)
        except BaseException as exc:  # surfaced by close() and the mode setters, not swallowed
            log.exception("fault proxy loop crashed")
            self._crash = exc
        finally:
            self._shutdown()

    def _apply_mode(self) -> None:
        with self._cond:
            if self._applied == self._generation:
                return
            mode, delay, generation = self._mode, self._latency, self._generation
        self._active, self._delay = mode, delay
        for conn in list(self._conns):
            if mode == "reset" or (mode != "blackhole" and conn.blackholed):
                self._abort(conn)
            elif mode == "blackhole" and not conn.blackholed:
                self._swallow(conn)
        with self._cond:
            self._applied = generation
            self._cond.notify_all()

    def _dispatch(self, data: object, events: int) -> None:
        if data is _LISTENER:
            self._accept()
        elif data is _WAKE:
            while self._drain_wake():
                pass
        else:
            assert isinstance(data, _Side)
            self._on_ready(data, events)

    def _drain_wake(self) -> bool:
        try:
            return bool(self._wake_r.recv(4096))
        except BlockingIOError:
            return False

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE, ECONNABORTED…: the client will retry or time out
                log.warning("fault proxy accept failed: %s", exc)
                return
            self._count("accepted")
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        """Take a new client connection in according to the active mode."""
        sock.setblocking(False)
        _no_delay(sock)
        if self._active == "reset":
            self._count("resets")
            _rst(sock)
            return
        conn = _Conn(sock)
        self._conns.add(conn)
        self._count("open")
        if self._active == "blackhole":
            conn.blackholed = True  # never reaches the target: a blackhole answers nothing, not even a SYN
        elif not self._connect_upstream(conn):
            return
        self._watch(conn)

    def _connect_upstream(self, conn: _Conn) -> bool:
        """Start a non-blocking connect to the target; on immediate failure reset the client and return False."""
        sock = socket.socket(self._target_family, socket.SOCK_STREAM)
        sock.setblocking(False)
        _no_delay(sock)
        err = sock.connect_ex(self._target_addr)
        conn.server = _Side(conn, sock, connected=err == 0, upstream=True)
        if err not in _CONNECTING:
            log.debug("fault proxy: connect to %s failed: %s", self.target, errno.errorcode.get(err, err))
            self._abort(conn)
            return False
        return True

    def _on_ready(self, side: _Side, events: int) -> None:
        conn = side.conn
        try:
            if events & selectors.EVENT_WRITE:
                if not side.connected:
                    self._finish_connect(side)
                else:
                    side.blocked = False
                    self._flush(side)
            if events & selectors.EVENT_READ and not conn.closed:
                self._read(side)
        except OSError as exc:  # a peer reset or vanished: mirror it to the other peer
            log.debug("fault proxy: connection failed: %s", exc)
            self._abort(conn)
        self._settle(conn)

    def _finish_connect(self, side: _Side) -> None:
        err = side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise ConnectionRefusedError(err, f"connect to {self.target}: {errno.errorcode.get(err, err)}")
        side.connected = True
        self._flush(side)

    def _read(self, side: _Side) -> None:
        """Read one chunk from side and queue it (or the FIN) for the other side, or drop it in a blackhole."""
        try:
            data = side.sock.recv(CHUNK)
        except BlockingIOError:
            return
        conn = side.conn
        if conn.blackholed:
            if not data:
                self._leave_blackhole_early(side)
            return
        other = conn.other(side)
        assert other is not None  # only blackholed connections lack a target side
        if data:
            other.queued += len(data)
        else:
            side.read_eof = True
        other.queue.append((time.monotonic(), data or None))
        self._pending.add(other)
        self._flush(other)

    def _leave_blackhole_early(self, side: _Side) -> None:
        """A peer closed while blackholed: if it was the client nobody is left to keep waiting, so abort it all;
        if it was the target, drop that socket and keep the client hanging as the blackhole promises."""
        conn = side.conn
        if side is conn.client:
            self._abort(conn)
        else:
            self._unwatch(side)
            side.sock.close()
            conn.server = None

    def _flush(self, side: _Side) -> float | None:
        """Send what is due to side; return when the next queued item falls due, or None if nothing waits on
        time. OSError (peer gone) propagates to the caller, which aborts the connection."""
        if not side.connected or side.blocked:
            return None  # connect completion or EVENT_WRITE calls back here
        while side.queue:
            received_at, chunk = side.queue[0]
            due = received_at + self._delay
            if due > time.monotonic():
                return due
            if chunk is None:
                side.sock.shutdown(socket.SHUT_WR)
                side.write_shut = True
                side.queue.popleft()
                continue
            try:
                sent = side.sock.send(memoryview(chunk)[side.offset:])
            except BlockingIOError:
                side.blocked = True
                return None
            side.offset += sent
            side.queued -= sent
            self._count("bytes_up" if side.upstream else "bytes_down", sent)
            if side.offset == len(chunk):
                side.queue.popleft()
                side.offset = 0
        return None

    def _flush_pending(self) -> float | None:
        """Flush every side with queued data; return the earliest time one of them needs flushing again."""
        earliest: float | None = None
        for side in list(self._pending):
            conn = side.conn
            if conn.closed or not side.queue:
                self._pending.discard(side)
                continue
            try:
                due = self._flush(side)
            except OSError as exc:
                log.debug("fault proxy: send failed: %s", exc)
                self._abort(conn)
                due = None
            self._settle(conn)
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def _settle(self, conn: _Conn) -> None:
        """After any progress: close a connection finished both ways, else re-register its sockets' events."""
        if conn.closed:
            return
        for side in conn.sides():
            if not side.queue:
                self._pending.discard(side)
        done = not conn.blackholed and all(s.read_eof and s.write_shut for s in conn.sides())
        if done:
            self._close(conn, abort=False)
        else:
            self._watch(conn)

    def _watch(self, conn: _Conn) -> None:
        """Register exactly the events each socket needs now (level-triggered, so never READ after EOF)."""
        for side in conn.sides():
            other = conn.other(side)
            mask = 0
            if not side.connected:
                mask = selectors.EVENT_WRITE  # writable = the connect finished, one way or the other
            else:
                room = conn.blackholed or other is None or other.queued < MAX_BUFFERED
                if not side.read_eof and room:
                    mask |= selectors.EVENT_READ
                if side.blocked:
                    mask |= selectors.EVENT_WRITE
            self._set_events(side, mask)

    def _set_events(self, side: _Side, mask: int) -> None:
        if mask == side.mask:
            return
        if side.mask == 0:
            self._sel.register(side.sock, mask, side)
        elif mask == 0:
            self._sel.unregister(side.sock)
        else:
            self._sel.modify(side.sock, mask, side)
        side.mask = mask

    def _unwatch(self, side: _Side) -> None:
        self._set_events(side, 0)
        self._pending.discard(side)

    def _swallow(self, conn: _Conn) -> None:
        """Turn an open connection into a blackholed one: what waits to be forwarded is lost."""
        conn.blackholed = True
        for side in conn.sides():
            side.queue.clear()
            side.queued = side.offset = 0
            self._pending.discard(side)
        self._watch(conn)

    def _abort(self, conn: _Conn) -> None:
        self._close(conn, abort=True)

    def _close(self, conn: _Conn, abort: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._conns.discard(conn)
        self._count("open", -1)
        resets = [s for s in conn.sides() if abort and s.connected]  # unconnected sockets have no peer to reset
        # Count first: whoever sees the RST must find it in stats.
        self._count("resets", len(resets))
        for side in conn.sides():
            self._unwatch(side)
            if side in resets:
                _rst(side.sock)
            else:
                side.sock.close()

    def _count(self, name: str, n: int = 1) -> None:
        with self._cond:
            self._stats[name] += n

    def _shutdown(self) -> None:
        """Loop exit: abort every connection, release the port and sockets, and release waiting setters."""
        for conn in list(self._conns):
            self._abort(conn)
        self._sel.close()
        self._listener.close()
        self._wake_r.close()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._wake_w.close()


def _rst(sock: socket.socket) -> None:
    """Close sock with RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except OSError:
        pass  # already reset by the peer: closing is all that is left
    sock.close()


def _no_delay(sock: socket.socket) -> None:
    # The proxied protocols are request/response with small packets: Nagle plus delayed ACKs would add ~40 ms
    # stalls of our own making to every exchange.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _host_port(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    """Run a pass-through proxy until Ctrl-C."""
    parser = argparse.ArgumentParser(description="TCP fault proxy (pass-through) for manual testing")
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 0), help="HOST:PORT (default port: any)")
    parser.add_argument("--target", type=_host_port, required=True, help="HOST:PORT of the service")
    args = parser.parse_args(argv)
    with FaultProxy(args.target, args.listen) as proxy:
        print(f"fault proxy {args.listen[0]}:{proxy.port} -> {args.target[0]}:{args.target[1]}; Ctrl-C stops",
              flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
