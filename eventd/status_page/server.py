"""The HTTP side of the status page: a threading server with four read-only routes."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
Snapshot = Callable[[], dict[str, Any]]

STATIC = {  # path -> (file in static/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Everything the page loads comes from this server; nothing inline, nothing from outside.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _asset(name: str) -> bytes:
    return resources.files("eventd.status_page").joinpath("static", name).read_bytes()


class CachedSnapshot:
    """Calls ``snapshot`` at most once per ``seconds``; thread-safe."""

    def __init__(self, snapshot: Snapshot, seconds: float) -> None:
        self._snapshot, self._seconds = snapshot, seconds
        self._lock = threading.Lock()
        self._at, self._body = -1e18, b""

    def body(self) -> bytes:
        """The JSON body; raises whatever the snapshot raised (not cached)."""
        with self._lock:
            if time.monotonic() - self._at >= self._seconds:
                data = dict(self._snapshot())
                data.setdefault("generated", time.time())
                self._body = json.dumps(data, default=str).encode()
                self._at = time.monotonic()
            return self._body


class StatusServer(ThreadingHTTPServer):
    """The running page. ``close()`` stops it and frees the port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, snapshot: Snapshot, cache_seconds: float) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.snapshot = CachedSnapshot(snapshot, cache_seconds)
        self.assets = {path: (_asset(name), ctype) for path, (name, ctype) in STATIC.items()}
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="status-page", daemon=True)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def start(self) -> "StatusServer":
        self._thread.start()
        log.info("status page on %s", self.url)
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


def serve_status_page(host: str, port: int, snapshot: Snapshot, cache_seconds: float = 1.0) -> StatusServer:
    """Serve the page on ``host:port`` (port 0: any free port, see ``.url``) until ``close()``.
    Raises OSError when the address cannot be bound (port in use)."""
    return StatusServer(host, port, snapshot, cache_seconds).start()


class _Handler(BaseHTTPRequestHandler):
    server: StatusServer
    server_version = "eventd-status"

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        path = urlsplit(self.path).path
        if path in self.server.assets:
            body, ctype = self.server.assets[path]
            self._send(200, ctype, body, head)
        elif path == "/status.json":
            self._status(head)
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n", head)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n", head)

    def _status(self, head: bool) -> None:
        try:
            body = self.server.snapshot.body()
        except Exception as exc:  # the daemon's snapshot failing must not take the page down
            log.warning("status snapshot failed: %s", exc)
            body = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            self._send(503, "application/json", body, head)
            return
        self._send(200, "application/json", body, head)

    def _refuse(self) -> None:
        self._send(405, "text/plain; charset=utf-8", b"read-only: GET or HEAD only\n", False,
                   {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _send(self, code: int, ctype: str, body: bytes, head: bool, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in {**SECURITY_HEADERS, "Content-Type": ctype, "Content-Length": str(len(body)),
                            "Cache-Control": "no-store", **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)
