"""The WebHDFS client against a local fake server: the two-step create, answers checked
(a rename answered false is reported, not taken for success), errors classified, and every
call bounded — a DataNode that accepts and never answers, a server that trickles bytes, a
NameNode that is not there."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from eventd.roles.hdfs_uploader.webhdfs import HdfsRefused, HdfsUnavailable, WebHdfs


class FakeNameNode:
    """Answers by a table of (method, op) → (status, headers, body); records requests."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, dict, bytes]] = {}
        self.requests: list[tuple[str, str, bytes]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.command, self.path, body))
                op = self.path.split("op=")[1].split("&")[0] if "op=" in self.path else "DATA"
                status, headers, data = fake.answers.get((self.command, op), (500, {}, b"no answer set"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v.replace("PORT", str(fake.port)))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def set(self, method: str, op: str, status: int, body: Any = b"", headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[(method, op)] = (status, headers or {}, data)


def remote(exception: str, message: str = "m") -> dict:
    return {"RemoteException": {"exception": exception, "javaClassName": f"x.{exception}", "message": message}}


@pytest.fixture
def nn() -> Iterator[FakeNameNode]:
    fake = FakeNameNode()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def client(nn: FakeNameNode, timeout: float = 2.0) -> WebHdfs:
    return WebHdfs("127.0.0.1", nn.port, "eventd", timeout)


def test_create_is_two_legs_and_sends_the_data(nn: FakeNameNode) -> None:
    nn.set("PUT", "CREATE", 307, headers={"Location": "http://127.0.0.1:PORT/dn/webhdfs/v1/a/b+1.avro?op=DATA&x=1"})
    nn.set("PUT", "DATA", 201)
    client(nn).create("/a/b+1.avro", [b"hello ", b"world"], 11)
    (m1, p1, _), (m2, p2, body) = nn.requests
    assert p1.startswith("/webhdfs/v1/a/b+1.avro?op=CREATE&user.name=eventd&overwrite=true")
    assert p2 == "/dn/webhdfs/v1/a/b+1.avro?op=DATA&x=1" and body == b"hello world"


def test_create_checks_both_answers(nn: FakeNameNode) -> None:
    nn.set("PUT", "CREATE", 200, {"boolean": True})
    with pytest.raises(HdfsUnavailable, match="HTTP 200"):
        client(nn).create("/a", [b"x"], 1)
    nn.set("PUT", "CREATE", 307, headers={"Location": "http://127.0.0.1:PORT/dn?op=DATA"})
    nn.set("PUT", "DATA", 500, remote("IOException", "could only be written to 0 of the 1 minReplication nodes"))
    with pytest.raises(HdfsUnavailable, match="minReplication"):
        client(nn).create("/a", [b"x"], 1)


def test_rename_false_is_reported_not_taken_for_success(nn: FakeNameNode) -> None:
    nn.set("PUT", "RENAME", 200, {"boolean": False})
    assert client(nn).rename("/a", "/b") is False
    nn.set("PUT", "RENAME", 200, {"boolean": True})
    assert client(nn).rename("/a", "/b") is True
    nn.set("PUT", "RENAME", 200, {"something": "else"})
    with pytest.raises(HdfsUnavailable, match="malformed"):
        client(nn).rename("/a", "/b")


def test_status_list_and_missing_paths(nn: FakeNameNode) -> None:
    nn.set("GET", "GETFILESTATUS", 404, remote("FileNotFoundException"))
    assert client(nn).status("/nope") is None
    nn.set("GET", "LISTSTATUS", 404, remote("FileNotFoundException"))
    assert client(nn).list("/nope") == []
    nn.set("GET", "LISTSTATUS", 200, {"FileStatuses": {"FileStatus": [{"pathSuffix": "x", "type": "FILE"}]}})
    assert client(nn).list("/d") == [{"pathSuffix": "x", "type": "FILE"}]
    nn.set("PUT", "MKDIRS", 200, {"boolean": False})
    with pytest.raises(HdfsRefused, match="returned false"):
        client(nn).mkdirs("/d")


@pytest.mark.parametrize("status, exception, error", [
    (403, "AccessControlException", HdfsRefused),
    (400, "IllegalArgumentException", HdfsRefused),
    (403, "StandbyException", HdfsUnavailable),
    (403, "SafeModeException", HdfsUnavailable),
    (403, "RetriableException", HdfsUnavailable),
    (500, "IOException", HdfsUnavailable),
])
def test_errors_are_classified(nn: FakeNameNode, status: int, exception: str, error: type) -> None:
    nn.set("GET", "GETFILESTATUS", status, remote(exception, "the reason"))
    with pytest.raises(error, match=f"{exception}: the reason"):
        client(nn).status("/x")


def test_a_datanode_that_never_answers_is_bounded(nn: FakeNameNode) -> None:
    hole = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(hole.accept()[0]), daemon=True).start()
    nn.set("PUT", "CREATE", 307, headers={"Location": f"http://127.0.0.1:{hole.getsockname()[1]}/x?op=DATA"})
    started = time.monotonic()
    with pytest.raises(HdfsUnavailable, match="DataNode leg.*deadline"):
        client(nn, timeout=1.0).create("/a", [b"x" * 1000], 1000)
    assert time.monotonic() - started < 3.0     # 1s deadline; the margin is for a loaded machine
    assert held, "the DataNode leg connected to the black hole"
    hole.close()


def test_a_server_trickling_bytes_cannot_stretch_the_deadline() -> None:
    """Each byte arrives well within a socket timeout; only a total deadline stops it."""
    srv = socket.create_server(("127.0.0.1", 0))

    def trickle() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        try:
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
                conn.sendall(bytes([b]))
                time.sleep(0.1)
        except OSError:
            pass
        conn.close()
    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(HdfsUnavailable, match="deadline"):
        WebHdfs("127.0.0.1", srv.getsockname()[1], "eventd", 1.0).status("/x")
    assert time.monotonic() - started < 3.0     # trickling to the end would take 14s
    srv.close()


def test_nothing_listening_is_unavailable_at_once() -> None:
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    started = time.monotonic()
    with pytest.raises(HdfsUnavailable, match="cannot connect"):
        WebHdfs("127.0.0.1", free, "eventd", 5.0).status("/x")
    assert time.monotonic() - started < 2.5


def test_deadline_block_caps_every_call(nn: FakeNameNode) -> None:
    hole = socket.create_server(("127.0.0.1", 0))
    c = WebHdfs("127.0.0.1", hole.getsockname()[1], "eventd", 30.0)
    started = time.monotonic()
    with c.deadline(time.monotonic() + 0.5), pytest.raises(HdfsUnavailable):
        c.status("/x")
    assert time.monotonic() - started < 2.5     # the client's own timeout is 30s
    hole.close()
