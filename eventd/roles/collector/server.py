"""The input loop: opens every enabled input on one asyncio loop, runs until stopped, closes them.

TCP, HTTP and UDP sockets are bound with SO_REUSEPORT, so the collector's processes (slots) share
one port and the kernel spreads connections among them. Unix sockets, unix datagrams and the file
tail are opened by slot 0 only (one path cannot be shared; two tailers would read every line twice).
A port or path that cannot be bound is :class:`CannotStart`: restarting would not help.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
import threading
import time
from typing import Any, Callable, Coroutine

from eventd.config.collector import CollectorConfig, SocketInput
from eventd.errors import CannotStart
from eventd.roles.collector.connections import BodyBudget, Connections
from eventd.roles.collector.datagram import DatagramProtocol
from eventd.roles.collector.http import HttpProtocol, Status
from eventd.roles.collector.intake import Intake
from eventd.roles.collector.stream import StreamProtocol
from eventd.roles.collector.syncer import Syncer
from eventd.roles.collector.tail import Tailer

log = logging.getLogger(__name__)

BODY_BUDGET_BODIES = 4        # request bodies held in memory at once, in units of max_body_size
UDP_RCVBUF = 4 << 20
SWEEP_INTERVAL = 1.0
CLOSE_GRACE = 5.0             # seconds open connections get to receive the answers still due


class Server:
    """Owns the listening sockets, the connections and the tail task of one collector process."""

    def __init__(self, cfg: CollectorConfig, slot: int, intake: Intake, syncer: Syncer, status: Status,
                 max_line: int, tailer: Tailer | None) -> None:
        self.cfg, self.slot, self.intake, self.syncer = cfg, slot, intake, syncer
        self.status, self.max_line, self.tailer = status, max_line, tailer
        self.connections = Connections(cfg.max_connections, cfg.idle_timeout)
        self.budget = BodyBudget(BODY_BUDGET_BODIES * cfg.max_body_size)
        self._servers: list[asyncio.base_events.Server] = []
        self._datagrams: list[tuple[asyncio.DatagramTransport, DatagramProtocol]] = []
        self._unix_paths: list[tuple[str, int]] = []     # (path, inode) to remove at close
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Open every enabled input; raises CannotStart (after closing what was opened) on failure."""
        try:
            await self._open_inputs()
        except BaseException:
            await self.close()
            raise
        if self.tailer is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._supervised(self.tailer.run, "tail")))
        self._tasks.append(asyncio.get_running_loop().create_task(self._sweep()))

    async def _open_inputs(self) -> None:
        c, loop = self.cfg, asyncio.get_running_loop()
        if c.http.enabled:
            await self._stream(loop, tcp_listener(c.http, "http"), self._http_protocol)
        if c.tcp.enabled:
            await self._stream(loop, tcp_listener(c.tcp, "tcp"), lambda: self._stream_protocol("tcp"))
        if c.unix.enabled and self.slot == 0:
            await self._stream(loop, self._unix_listener(c.unix, socket.SOCK_STREAM, "unix"),
                               lambda: self._stream_protocol("unix"))
        if c.udp.enabled:
            await self._datagram(loop, udp_listener(c.udp), "udp")
        if c.unix_datagram.enabled and self.slot == 0:
            await self._datagram(loop, self._unix_listener(c.unix_datagram, socket.SOCK_DGRAM, "unix_datagram"),
                                 "unix_datagram")

    def _http_protocol(self) -> HttpProtocol:
        return HttpProtocol(self.connections, self.intake, self.syncer, self.budget, self.status,
                            self.cfg.max_body_size)

    def _stream_protocol(self, name: str) -> StreamProtocol:
        return StreamProtocol(self.connections, self.intake, self.syncer, name, self.max_line)

    async def _stream(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                      factory: Callable[[], asyncio.Protocol]) -> None:
        self._servers.append(await loop.create_server(factory, sock=sock, backlog=1024))
        log.info("listening on %s", _name(sock))

    async def _datagram(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, name: str) -> None:
        transport, protocol = await loop.create_datagram_endpoint(lambda: DatagramProtocol(self.intake, name),
                                                                  sock=sock)
        self._datagrams.append((transport, protocol))  # type: ignore[arg-type]
        log.info("receiving datagrams on %s", _name(sock))

    def _unix_listener(self, cfg: SocketInput, kind: int, what: str) -> socket.socket:
        sock = unix_listener(cfg.path, cfg.mode, kind, what)
        self._unix_paths.append((cfg.path, os.stat(cfg.path).st_ino))
        return sock

    @staticmethod
    async def _supervised(run: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        """A background task whose failure is logged loudly and restarted, never silently lost."""
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s input failed; restarting it in 5s", what)
                await asyncio.sleep(5)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.connections.sweep(time.monotonic())

    async def serve_until(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (by the signal handler in the main thread)."""
        while not stop.is_set():
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Stop accepting, take what datagrams and tailed lines are pending, give open connections
        a grace period for the answers still due, then close them."""
        for srv in self._servers:
            srv.close()
        for transport, protocol in self._datagrams:
            protocol.flush()
            transport.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        deadline = time.monotonic() + CLOSE_GRACE
        while self.connections.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.connections.close_all()
        await asyncio.sleep(0)      # let the transports flush and close
        for path, ino in self._unix_paths:
            _remove_socket(path, ino)
        self._servers.clear()
        self._datagrams.clear()


def tcp_listener(cfg: SocketInput, what: str) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT (several processes share the port)."""
    return _bound(cfg, socket.SOCK_STREAM, what, listen=True)


def udp_listener(cfg: SocketInput) -> socket.socket:
    sock = _bound(cfg, socket.SOCK_DGRAM, "udp", listen=False)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
    except OSError:
        pass    # capped by net.core.rmem_max; the default still works
    return sock


def _bound(cfg: SocketInput, kind: int, what: str, listen: bool) -> socket.socket:
    try:
        family, _, _, _, addr = socket.getaddrinfo(cfg.host, cfg.port, type=kind)[0]
    except socket.gaierror as exc:
        raise CannotStart(f"{what}: cannot resolve {cfg.host}: {exc}") from None
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        if listen:
            sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise CannotStart(f"{what}: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def unix_listener(path: str, mode: int, kind: int, what: str) -> socket.socket:
    """A unix socket at ``path`` with ``mode``; a stale socket file left by a crash is replaced, a live
    one (another process listening) is CannotStart."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _clear_stale(path, kind, what)
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.bind(path)
        os.chmod(path, mode)
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
    except OSError as exc:
        raise CannotStart(f"{what}: cannot listen on {path}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _clear_stale(path: str, kind: int, what: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise CannotStart(f"{what}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, kind)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        os.unlink(path)     # nobody listens: left behind by a crash
        return
    finally:
        probe.close()
    raise CannotStart(f"{what}: {path} is in use by another process")


def _remove_socket(path: str, ino: int) -> None:
    try:
        if os.stat(path).st_ino == ino:
            os.unlink(path)
    except OSError:
        pass


def _name(sock: socket.socket) -> str:
    addr = sock.getsockname()
    return addr if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"
