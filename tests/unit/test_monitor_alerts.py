"""The alert outputs: the JSON message, Kafka retried until acknowledged, a webhook retried with
backoff for retry_for and never blocking longer than its timeout (against a real loopback server)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from eventd.config.monitor import WebhookConfig
from eventd.kafka.types import KafkaTimeoutError, SendFuture
from eventd.roles.monitor.alerts import AlertOutputs, KafkaOutput, WebhookOutput, http_post
from eventd.roles.monitor.incidents import AlertMessage
from eventd.roles.monitor.testdata import FakeClock

MSG = AlertMessage("alert", "r-1000-abcd", "r", "flood", "1.2.3.4", "critical", "click flood: ip=1.2.3.4",
                   1_700_000_000_000, 1_700_000_000_000, {"count": 99})


class FakeProducer:
    """Answers each send with a Future the test completes; ``refuse`` makes send itself raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, SendFuture]] = []
        self.refuse = False

    def send(self, topic: str, value: bytes, key: bytes | None = None, **_: Any) -> SendFuture:
        if self.refuse:
            raise KafkaTimeoutError("no metadata for the topic")
        future = SendFuture()
        self.sent.append((topic, value, key, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_message_format_and_every_output() -> None:
    producer, posted = FakeProducer(), []
    webhook = WebhookOutput(WebhookConfig("http://hook", 1.0, 60.0), post=lambda u, b, t: posted.append(b))
    outputs = AlertOutputs(KafkaOutput(producer, "alerts"), webhook, "mon-1", 10, FakeClock(1_700_000_005.0))
    outputs.publish([MSG])
    outputs.poll()
    [(topic, value, key, _)] = producer.sent
    data = json.loads(value)
    assert topic == "alerts" and key == b"r/1.2.3.4"
    assert data == {**MSG.as_dict(), "time": "2023-11-14T22:13:20Z", "emitted": "2023-11-14T22:13:25Z",
                    "source": "mon-1"}
    assert posted == [value] and list(outputs.recent) == [data]


def test_kafka_failures_are_sent_again_until_acknowledged() -> None:
    producer, clock = FakeProducer(), FakeClock(100.0)
    out = KafkaOutput(producer, "alerts")
    out.send(b"m1", b"k", clock())
    producer.sent[0][3].complete(KafkaTimeoutError("expired"))
    out.poll(clock())
    assert out.pending() == 1 and len(producer.sent) == 1       # waits for the backoff
    out.poll(clock() + 1.5)
    assert len(producer.sent) == 2 and producer.sent[1][1] == b"m1"
    producer.sent[1][3].complete(None)
    out.poll(clock() + 2)
    assert out.pending() == 0


def test_a_refused_send_is_retried() -> None:
    producer = FakeProducer()
    out = KafkaOutput(producer, "alerts")
    producer.refuse = True
    out.send(b"m1", b"k", 0.0)
    assert out.pending() == 1 and producer.sent == []
    producer.refuse = False
    out.poll(2.0)
    assert [s[1] for s in producer.sent] == [b"m1"]


def test_webhook_backoff_then_delivery_in_order() -> None:
    calls: list[bytes] = []
    failing = [True]

    def post(url: str, body: bytes, timeout: float) -> None:
        calls.append(body)
        if failing[0]:
            raise ConnectionRefusedError("refused")

    hook = WebhookOutput(WebhookConfig("http://hook", 1.0, 600.0), post=post)
    hook.send(b"a", 0.0)
    hook.send(b"b", 0.0)
    hook.poll(0.0)
    assert calls == [b"a"]                       # one failure stops the round: no second wait
    hook.poll(0.5)
    assert calls == [b"a"]                       # backoff (1 s) not over
    failing[0] = False
    hook.poll(1.0)
    assert calls == [b"a", b"a", b"b"] and hook.pending() == 0


def test_webhook_gives_up_after_retry_for() -> None:
    def post(url: str, body: bytes, timeout: float) -> None:
        raise TimeoutError("timed out")

    hook = WebhookOutput(WebhookConfig("http://hook", 1.0, 10.0), post=post)
    hook.send(b"a", 0.0)
    for t in range(0, 10):
        hook.poll(float(t))
    assert hook.pending() == 1                   # tried at 0, 1, 3, 7 s: still within retry_for
    for t in range(10, 20):
        hook.poll(float(t))
    assert hook.pending() == 0                   # the first attempt after 10 s failed: dropped


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[bytes] = []
    delay = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        type(self).bodies.append(body)
        self.send_response(204 if self.path == "/ok" else 500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    _Recorder.bodies, _Recorder.delay = [], 0.0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_http_post_to_a_real_server(server: ThreadingHTTPServer) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    http_post(base + "/ok", b'{"kind": "alert"}', 2.0)
    assert _Recorder.bodies == [b'{"kind": "alert"}']
    with pytest.raises(OSError):                 # a 500 is a failure, to be retried
        http_post(base + "/fail", b"{}", 2.0)


def test_a_hanging_webhook_costs_one_timeout(server: ThreadingHTTPServer) -> None:
    _Recorder.delay = 3.0
    hook = WebhookOutput(WebhookConfig(f"http://127.0.0.1:{server.server_address[1]}/ok", 0.5, 600.0))
    for body in (b"1", b"2", b"3"):
        hook.send(body, 0.0)
    started = time.monotonic()
    hook.poll(0.0)
    hook.poll(0.1)                               # within the backoff: no call
    assert time.monotonic() - started < 2.0
    assert hook.pending() == 3
