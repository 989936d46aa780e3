"""The HTTP input: a small HTTP/1.1 server on asyncio (keep-alive, pipelining, chunked bodies,
``Expect: 100-continue``), because the hot path must not pay for ``http.server``'s thread per
connection and e-mail header parser.

- ``POST /v1/events``: NDJSON (one event per line), or with ``Content-Type: application/json`` a
  single JSON object, pretty-printed or not. Answer ``202`` with
  ``{"accepted":N,"rejected":M,"errors":[{"line":i,"error":"…"}]}`` once the accepted events are in
  the queue (and on disk, under fsync ``always``). The queue full: ``503`` with ``Retry-After`` and
  ``"refused":K`` — none of the request's events was taken; send it again.
- ``GET /healthz``: ``200`` with the queue's state, ``503`` while the queue refuses events.
- A body over ``max_body_size``: ``413``; a request head over 64 KiB: ``431``; malformed: ``400``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

from eventd.roles.collector.connections import BodyBudget, Connection, Connections
from eventd.roles.collector.intake import Intake, Outcome
from eventd.roles.collector.syncer import Syncer

log = logging.getLogger(__name__)

MAX_HEAD = 64 << 10
MAX_CHUNK_LINE = 1024
EVENTS_PATH, HEALTH_PATH = "/v1/events", "/healthz"
REASONS = {100: "Continue", 200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}
_JSON_DECODER = json.JSONDecoder()

# Parser states
HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER = range(6)

Status = Callable[[], tuple[int, dict[str, Any]]]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    keep_alive: bool
    headers: dict[str, str]

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_head(head: bytes) -> Request:
    """The request line and headers (``head`` without the final blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, f"{version[:20]!r} is not supported (expected HTTP/1.1)")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        key = name.decode("latin-1").lower()
        val = value.strip().decode("latin-1")
        if key in headers and key in ("content-length", "transfer-encoding") and headers[key] != val:
            raise BadRequest(400, f"conflicting {key} headers")
        headers[key] = val
    conn = headers.get("connection", "").lower()
    keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
    return Request(method, target.split("?", 1)[0], keep_alive, headers)


def split_body(body: bytes, content_type: str) -> list[bytes]:
    """The body's event lines: NDJSON, or one pretty-printed JSON document under application/json."""
    if content_type == "application/json" and _single_document(body):
        return [body]
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _single_document(body: bytes) -> bool:
    stripped = body.strip()
    if b"\n" not in stripped:
        return False        # one line: the NDJSON path is the same thing
    try:
        text = stripped.decode("utf-8")
        _, end = _JSON_DECODER.raw_decode(text)
    except ValueError:
        return False
    return end == len(text)


class HttpProtocol(Connection):
    """One HTTP connection; requests are handled strictly in order."""

    input_name = "http"

    def __init__(self, connections: Connections, intake: Intake, syncer: Syncer, budget: BodyBudget,
                 status: Status, max_body: int) -> None:
        super().__init__(connections)
        self.intake, self.syncer, self.budget, self.status, self.max_body = intake, syncer, budget, status, max_body
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._state = HEAD
        self._req: Request | None = None
        self._need = 0             # body bytes (BODY) or chunk bytes (CHUNK_DATA) still to read
        self._body = bytearray()   # chunked body so far
        self._reserved = 0         # body budget held by this connection
        self._budget_wait = False
        self._eof = False

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        self.touch()
        self._buf += data
        self._process()

    def on_resumed(self) -> None:
        self._loop.call_soon(self._process)

    def eof_received(self) -> bool:
        self._eof = True
        if not self.waiting:
            self._process()
            if not self.waiting:
                self.shutdown()
        return True     # keep the transport open to write the answer still due

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._budget_wait:
            self.budget.cancel(self._granted)
        self._release()

    def _process(self) -> None:
        steps = {HEAD: self._read_head, BODY: self._read_body, CHUNK_SIZE: self._read_chunk_size,
                 CHUNK_DATA: self._read_chunk_data, CHUNK_END: self._read_chunk_end, TRAILER: self._read_trailer}
        try:
            while not self.waiting and not self.closing and self.transport is not None:
                if not steps[self._state]():
                    return
        except BadRequest as exc:
            self._respond(exc.status, {"error": str(exc)}, close=True)

    def _read_head(self) -> bool:
        while self._buf[:2] == b"\r\n":     # tolerated between requests (RFC 9112 2.2)
            del self._buf[:2]
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise BadRequest(431, f"request head over {MAX_HEAD} bytes")
            return False
        head = bytes(self._buf[:end])
        del self._buf[:end + 4]
        self._req = parse_head(head)
        self._route(self._req)
        return True

    def _route(self, req: Request) -> None:
        if req.path == EVENTS_PATH and req.method == "POST":
            self._start_body(req)
        elif req.path == HEALTH_PATH and req.method in ("GET", "HEAD"):
            code, doc = self.status()
            self._respond(code, doc, close=not req.keep_alive or self._has_body(req),
                          head_only=req.method == "HEAD")
        elif req.path in (EVENTS_PATH, HEALTH_PATH):
            allow = "POST" if req.path == EVENTS_PATH else "GET, HEAD"
            self._respond(405, {"error": f"{req.method} is not allowed on {req.path} (allowed: {allow})"},
                          close=True, extra=f"Allow: {allow}\r\n")
        else:
            self._respond(404, {"error": f"no such path {req.path[:100]!r} (POST {EVENTS_PATH}, GET {HEALTH_PATH})"},
                          close=not req.keep_alive or self._has_body(req))

    @staticmethod
    def _has_body(req: Request) -> bool:
        return "transfer-encoding" in req.headers or req.headers.get("content-length", "0") != "0"

    def _start_body(self, req: Request) -> None:
        te = req.headers.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise BadRequest(501, f"transfer-encoding {te[:40]!r} is not supported (only chunked)")
            size, self._state = self.max_body, CHUNK_SIZE
        else:
            cl = req.headers.get("content-length", "0")
            if not cl.isdigit():
                raise BadRequest(400, f"invalid content-length {cl[:40]!r}")
            size = int(cl)
            if size > self.max_body:
                self._respond(413, {"error": f"body of {size} bytes is over the limit of {self.max_body}"},
                              close=True)
                return
            self._state, self._need = BODY, size
        self._body = bytearray()
        if size and not self.budget.reserve(size, self._granted):
            self._budget_wait = True
            self._reserved = size
            self.begin_wait()
            return
        self._reserved = size
        self._continue(req)

    def _granted(self) -> None:
        self._budget_wait = False
        if self._req is not None:
            self._continue(self._req)
        self.end_wait()

    def _continue(self, req: Request) -> None:
        if req.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_body(self) -> bool:
        if len(self._buf) < self._need:
            return False
        body = bytes(self._buf[:self._need])
        del self._buf[:self._need]
        self._events(body)
        return True

    def _read_chunk_size(self) -> bool:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_CHUNK_LINE:
                raise BadRequest(400, "malformed chunk size line")
            return False
        line = bytes(self._buf[:end]).split(b";", 1)[0].strip()
        del self._buf[:end + 2]
        try:
            size = int(line, 16)
        except ValueError:
            raise BadRequest(400, "malformed chunk size") from None
        if size < 0:
            raise BadRequest(400, "malformed chunk size")
        if len(self._body) + size > self.max_body:
            self._respond(413, {"error": f"chunked body over the limit of {self.max_body} bytes"}, close=True)
            return False
        self._state, self._need = (CHUNK_DATA, size) if size else (TRAILER, 0)
        return True

    def _read_chunk_data(self) -> bool:
        take = min(self._need, len(self._buf))
        if not take:
            return False
        self._body += self._buf[:take]
        del self._buf[:take]
        self._need -= take
        if not self._need:
            self._state = CHUNK_END
        return True

    def _read_chunk_end(self) -> bool:
        if len(self._buf) < 2:
            return False
        if self._buf[:2] != b"\r\n":
            raise BadRequest(400, "chunk not followed by CRLF")
        del self._buf[:2]
        self._state = CHUNK_SIZE
        return True

    def _read_trailer(self) -> bool:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise BadRequest(431, "trailers too long")
            return False
        del self._buf[:end + 2]
        if end == 0:                 # the blank line that ends the chunked body
            body, self._body = bytes(self._body), bytearray()
            self._events(body)
        return True

    # ------------------------------------------------------------------ answering

    def _events(self, body: bytes) -> None:
        req = self._req
        assert req is not None
        self._state = HEAD
        outcome = self.intake.ingest(split_body(body, req.content_type), self.input_name)
        self._release()
        if outcome.end and self.syncer.waits:
            self.begin_wait()
            self.syncer.when_synced(outcome.end, lambda: self._loop.call_soon_threadsafe(self._synced, req, outcome))
        else:
            self._answer(req, outcome)

    def _synced(self, req: Request, outcome: Outcome) -> None:
        self._answer(req, outcome)
        self.end_wait()
        if self._eof and not self.waiting:
            self._process()
            if not self.waiting:
                self.shutdown()

    def _answer(self, req: Request, outcome: Outcome) -> None:
        if outcome.refused:
            self._respond(503, outcome.answer(), close=not req.keep_alive, extra="Retry-After: 1\r\n")
        elif outcome.rejected:
            self._respond(202, outcome.answer(), close=not req.keep_alive)
        else:
            body = f'{{"accepted":{outcome.accepted},"rejected":0,"errors":[]}}'.encode()
            self._write(202, body, close=not req.keep_alive)

    def _release(self) -> None:
        if self._reserved and not self._budget_wait:
            reserved, self._reserved = self._reserved, 0
            self.budget.release(reserved)

    def _respond(self, status: int, doc: dict[str, Any], close: bool, extra: str = "",
                 head_only: bool = False) -> None:
        body = json.dumps(doc, separators=(",", ":")).encode()
        self._write(status, body, close, extra, head_only)

    def _write(self, status: int, body: bytes, close: bool, extra: str = "", head_only: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra}{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n")
        self.transport.write(head.encode() + (b"" if head_only else body))
        if close:
            self.shutdown()
