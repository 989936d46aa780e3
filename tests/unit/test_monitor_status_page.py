"""The status page's HTTP side over loopback: routes, the JSON snapshot (cached, errors as 503),
read-only methods, and the headers that keep the page from loading anything from elsewhere.
(The page itself runs in a real browser in tests/integration/test_status_page_browser.py.)"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

from eventd.status_page import StatusServer, serve_status_page


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, data=b"{}" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def page() -> Iterator[tuple[StatusServer, list[int]]]:
    calls: list[int] = []

    def snapshot() -> dict[str, Any]:
        calls.append(1)
        return {"roles": [{"name": "collector", "healthy": True, "rate": 10.0 * len(calls)}]}

    server = serve_status_page("127.0.0.1", 0, snapshot, cache_seconds=0.3)
    yield server, calls
    server.close()


def test_page_and_assets_are_served_with_a_strict_policy(page) -> None:  # type: ignore[no-untyped-def]
    server, _ = page
    code, headers, body = fetch(server.url)
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="/static/app.js"' in body and b"<script>" not in body      # no inline script
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    for asset, ctype in (("static/app.js", "text/javascript"), ("static/style.css", "text/css")):
        code, headers, body = fetch(server.url + asset)
        assert code == 200 and headers["Content-Type"].startswith(ctype) and body
    assert b"http" not in fetch(server.url + "static/app.js")[2].replace(b"http://www.w3.org/2000/svg", b"")


def test_status_json_is_the_snapshot_cached_briefly(page) -> None:  # type: ignore[no-untyped-def]
    server, calls = page
    code, headers, body = fetch(server.url + "status.json")
    data = json.loads(body)
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert data["roles"][0]["rate"] == 10.0 and isinstance(data["generated"], float)
    fetch(server.url + "status.json")
    assert len(calls) == 1                       # within cache_seconds
    time.sleep(0.35)
    assert json.loads(fetch(server.url + "status.json")[2])["roles"][0]["rate"] == 20.0


def test_read_only(page) -> None:  # type: ignore[no-untyped-def]
    server, _ = page
    for method in ("POST", "PUT", "DELETE"):
        code, headers, _ = fetch(server.url + "status.json", method)
        assert code == 405 and headers["Allow"] == "GET, HEAD"
    assert fetch(server.url + "nope")[0] == 404
    code, _, body = fetch(server.url + "status.json", "HEAD")
    assert code == 200 and body == b""
    assert fetch(server.url + "healthz")[2] == b"ok\n"


def test_a_failing_snapshot_is_a_503_and_the_server_goes_on() -> None:
    state = {"fail": True}

    def snapshot() -> dict[str, Any]:
        if state["fail"]:
            raise RuntimeError("supervisord is not answering")
        return {"roles": []}

    server = serve_status_page("127.0.0.1", 0, snapshot, cache_seconds=0.0)
    try:
        code, _, body = fetch(server.url + "status.json")
        assert code == 503 and "supervisord is not answering" in json.loads(body)["error"]
        state["fail"] = False
        assert fetch(server.url + "status.json")[0] == 200
    finally:
        server.close()


def test_port_in_use_raises_and_close_frees_the_port() -> None:
    server = serve_status_page("127.0.0.1", 0, dict)
    port = server.server_address[1]
    with pytest.raises(OSError):
        serve_status_page("127.0.0.1", port, dict)
    server.close()
    again = serve_status_page("127.0.0.1", port, dict)
    again.close()


def test_loopback_ipv6() -> None:
    server = serve_status_page("::1", 0, dict)
    try:
        assert server.url.startswith("http://[::1]:") and fetch(server.url + "healthz")[0] == 200
    finally:
        server.close()


def test_snapshot_from_the_daemons_report_groups_processes_per_role() -> None:
    from eventd.status_page import snapshot_from_report

    proc = {"role": "collector", "state": "RUNNING", "healthy": True, "uptime": 50.0, "restarts": 1,
            "events_per_second": 100.0, "kafka_lag": None, "note": None, "last_error": None}
    report = {"healthy": False, "config_path": "/etc/eventd/eventd.yaml", "problems": ["loader is FATAL"],
              "processes": [proc, {**proc, "uptime": 20.0, "events_per_second": 50.5},
                            {**proc, "role": "clickhouse-loader", "state": "FATAL", "healthy": False, "uptime": None,
                             "events_per_second": None, "kafka_lag": 900, "note": "cannot start: no table"}]}
    snap = snapshot_from_report(report, [{"kind": "alert", "summary": "x"}])
    collector, loader = snap["roles"]
    assert collector == {"name": "collector", "healthy": True, "state": "RUNNING", "processes": 2, "running": 2,
                         "restarts": 2, "uptime": 20.0, "rate": 150.5, "lag": None, "last_error": ""}
    assert (loader["healthy"], loader["state"], loader["running"], loader["lag"], loader["last_error"]) == \
        (False, "FATAL", 0, 900, "cannot start: no table")
    assert snap["healthy"] is False and snap["alerts"] == [{"kind": "alert", "summary": "x"}]
