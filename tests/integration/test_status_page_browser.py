"""The status page in a real headless browser (Debian's chromium + chromedriver, driven through
chromedriver's W3C HTTP API with urllib): it renders each role's health, its charts move as the
snapshot's numbers change, the recent alerts show (as text, never as HTML), and nothing is loaded
from anywhere but the page's own server.

Needs the Debian packages ``chromium`` and ``chromium-driver``."""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import threading
import urllib.request
from typing import Any, Iterator

import pytest

from harness import free_port, wait_for

from eventd.status_page import serve_status_page

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1400,900"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Browser:
    """One chromedriver session, spoken to in W3C WebDriver JSON."""

    def __init__(self, driver_url: str, user_data_dir: str) -> None:
        self.base = driver_url
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": CHROME_ARGS + [f"--user-data-dir={user_data_dir}"]}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["value"]

    def _s(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        self._s("POST", "/url", {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        return self._s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, css: str) -> bytes:
        element = self._s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
        return base64.b64decode(self._s("GET", f"/element/{element}/screenshot"))

    def close(self) -> None:
        self._s("DELETE", "")


@pytest.fixture
def browser(tmp_path) -> Iterator[Browser]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.path.exists(path), f"{path} is missing: apt-get install -y chromium chromium-driver"
    port = free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 30, "chromedriver to answer")
        b = Browser(url, str(tmp_path / "chrome-profile"))
        try:
            yield b
        finally:
            b.close()
    finally:
        driver.terminate()
        driver.wait(30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/status", timeout=2) as resp:
            return json.loads(resp.read())["value"]["ready"]
    except OSError:
        return False


class MovingSnapshot:
    """A daemon stand-in whose rates and lags change on every call, like a pipeline under load."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.served: dict[str, list[float]] = {"collector": [], "clickhouse-loader": []}

    def __call__(self) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            n = self.calls
        rate = round(1000 + 800 * math.sin(n / 2), 1)
        lag = (n * 37) % 500
        self.served["collector"].append(rate)
        return {"node": "test-node", "roles": [
            {"name": "collector", "healthy": True, "state": "RUNNING", "processes": 2, "running": 2,
             "restarts": 0, "uptime": 30.0 + n, "rate": rate, "lag": 0},
            {"name": "clickhouse-loader", "healthy": n % 2 == 0, "state": "BACKOFF", "processes": 1,
             "running": 0, "restarts": 3, "uptime": 1.0, "rate": rate / 2, "lag": lag,
             "last_error": "ClickHouse 127.0.0.1:9000 refused the connection"}],
            "alerts": [
                {"kind": "alert", "time": "2024-05-01T10:00:00Z", "severity": "critical", "rule": "traffic-host",
                 "key": "web-7", "summary": "traffic drop: host=web-7 <b id='injected'>bold</b>"},
                {"kind": "resolved", "time": "2024-05-01T09:00:00Z", "severity": "warning", "rule": "clock-host",
                 "key": "web-2", "summary": "resolved after 10m: event clock: host=web-2"}]}


def chart_state(b: Browser, css: str) -> dict[str, Any]:
    return b.js("const s = document.querySelector(arguments[0]);"
                "return s ? {points: s.querySelector('polyline').getAttribute('points'), "
                "n: Number(s.dataset.points), last: Number(s.dataset.last), version: Number(s.dataset.version)}"
                " : null;", css)


def test_charts_move_as_the_numbers_change(browser: Browser) -> None:
    snapshot = MovingSnapshot()
    server = serve_status_page("127.0.0.1", 0, snapshot, cache_seconds=0.0)
    try:
        browser.open(server.url + "?refresh=250")
        rate = "#chart-rate-collector"
        first = wait_for(lambda: (s := chart_state(browser, rate)) and s["n"] >= 3 and s, 30, "the first points")
        shot1 = browser.screenshot(rate)
        later = wait_for(lambda: (s := chart_state(browser, rate)) and s["version"] >= first["version"] + 4 and s,
                         30, "the chart to be redrawn with new points")
        shot2 = browser.screenshot(rate)
        assert later["n"] > first["n"]
        assert later["points"] != first["points"], "the polyline did not change"
        assert later["last"] in snapshot.served["collector"]
        assert shot1 != shot2, "the chart's pixels did not change"
        lag = wait_for(lambda: chart_state(browser, "#chart-lag-clickhouse-loader"), 10, "the lag chart")
        assert lag["n"] >= 1 and lag["points"]
    finally:
        server.close()


def test_health_and_alerts_render_as_text(browser: Browser) -> None:
    server = serve_status_page("127.0.0.1", 0, MovingSnapshot(), cache_seconds=0.0)
    try:
        browser.open(server.url + "?refresh=250")
        wait_for(lambda: browser.js("return Number(document.body.dataset.updates || 0)") >= 2, 30, "two updates")
        page = browser.js(
            "const cell = (id, c) => document.querySelector('#role-' + id + ' .' + c).textContent;"
            "return {health: cell('collector', 'health'), processes: cell('collector', 'processes'),"
            " error: cell('clickhouse-loader', 'error'), node: document.getElementById('node').textContent,"
            " alerts: [...document.querySelectorAll('#alerts tbody tr')].map(r => r.textContent),"
            " injected: document.getElementById('injected') !== null,"
            " resources: performance.getEntriesByType('resource').map(e => e.name)};")
        assert page["health"] == "healthy" and page["processes"] == "2/2" and page["node"] == "test-node"
        assert "refused the connection" in page["error"]
        assert len(page["alerts"]) == 2 and "<b id='injected'>bold</b>" in page["alerts"][0]
        assert not page["injected"], "alert text was inserted as HTML"
        assert page["resources"] and all(r.startswith(server.url) for r in page["resources"])
    finally:
        server.close()


def test_snapshot_failure_shows_unavailable(browser: Browser) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("supervisord is not answering")

    server = serve_status_page("127.0.0.1", 0, broken, cache_seconds=0.0)
    try:
        browser.open(server.url + "?refresh=250")
        text = wait_for(lambda: (t := browser.js("return document.getElementById('overall').textContent"))
                        == "status unavailable" and t, 30, "the unavailable banner")
        assert text == "status unavailable"
        assert "supervisord is not answering" in browser.js("return document.getElementById('updated').textContent")
    finally:
        server.close()
