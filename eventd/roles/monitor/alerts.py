"""Where alert messages go: the log (at once), the Kafka alert topic (retried until acknowledged),
and optionally a webhook (retried for ``retry_for``, one bounded wait per attempt).

Every output works inside the consumer loop's thread without blocking it for long: the Kafka send
is asynchronous and checked on each tick; a webhook that fails is not called again before its
backoff has passed, so an unreachable webhook costs at most one ``timeout`` per backoff period.

Message format (JSON, UTF-8; the Kafka message key is ``<rule>/<key>`` so the messages of one
incident stay in order)::

    {"kind": "alert" | "resolved", "incident": "traffic-host-1700000040000-1a2b3c4d",
     "rule": "traffic-host", "rule_kind": "traffic", "key": "web-07", "severity": "warning",
     "summary": "traffic drop: host=web-07: 3 events in the last 5m, expected 1200 (-100%)",
     "opened": 1700000040000, "at": 1700000040000,          # data times, epoch ms
     "time": "2023-11-14T22:14:00Z", "emitted": "2023-11-14T22:14:11Z", "source": "monitor-host",
     "details": {...rule-specific numbers...}}
"""

from __future__ import annotations

import collections
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from eventd.config.monitor import WebhookConfig
from eventd.kafka.producer import Producer
from eventd.kafka.types import KafkaError, SendFuture
from eventd.metrics import MONITOR_ALERTS, MONITOR_DELIVERY_FAILURES, MONITOR_UNDELIVERED
from eventd.roles.monitor.incidents import ALERT, AlertMessage

log = logging.getLogger(__name__)
Clock = Callable[[], float]
Post = Callable[[str, bytes, float], None]

RETRY_INITIAL, RETRY_MAX = 1.0, 60.0


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(msg: AlertMessage, source: str, now: float) -> dict[str, Any]:
    """The JSON object sent for ``msg`` (see the module docstring)."""
    return {**msg.as_dict(), "time": iso(msg.at), "emitted": iso(now * 1000), "source": source}


class KafkaOutput:
    """Sends to the alert topic; a failed or refused send is sent again after a backoff."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self._pending: list[list[Any]] = []      # [payload, key, future | None, next attempt]

    def send(self, payload: bytes, key: bytes, now: float) -> None:
        entry: list[Any] = [payload, key, None, now]
        self._pending.append(entry)
        self._try(entry, now)

    def _try(self, entry: list[Any], now: float) -> None:
        try:
            entry[2] = self.producer.send(self.topic, entry[0], key=entry[1])
        except KafkaError as exc:     # e.g. no metadata for the topic within max_block_ms
            self._failed(entry, now, exc)

    def _failed(self, entry: list[Any], now: float, exc: object) -> None:
        MONITOR_DELIVERY_FAILURES.labels("kafka").inc()
        log.warning("alert not delivered to Kafka topic %s (retrying in %.0fs): %s", self.topic, RETRY_INITIAL, exc)
        entry[2], entry[3] = None, now + RETRY_INITIAL

    def poll(self, now: float) -> None:
        """Forget acknowledged sends, resend failed ones whose backoff has passed."""
        still: list[list[Any]] = []
        for entry in self._pending:
            future: SendFuture | None = entry[2]
            if future is not None and future.is_done:
                if future.succeeded():
                    continue
                self._failed(entry, now, future.exception)
            if entry[2] is None and now >= entry[3]:
                self._try(entry, now)
            still.append(entry)
        self._pending = still
        MONITOR_UNDELIVERED.labels("kafka").set(len(self._pending))

    def pending(self) -> int:
        return len(self._pending)

    def flush(self, timeout: float) -> None:
        try:
            self.producer.flush(timeout)
        except KafkaError as exc:
            log.warning("alerts not acknowledged by Kafka before stopping: %s", exc)
        self.poll(time.time())


def http_post(url: str, body: bytes, timeout: float) -> None:
    """POST ``body`` as JSON; any answer but 2xx raises (HTTPError is an OSError)."""
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "eventd-monitor"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()


class WebhookOutput:
    """POSTs each message in order; keeps a message for ``retry_for`` while the webhook fails."""

    def __init__(self, cfg: WebhookConfig, post: Post = http_post) -> None:
        self.cfg, self._post = cfg, post
        self._queue: collections.deque[tuple[bytes, float]] = collections.deque()
        self._next_try = 0.0
        self._backoff = RETRY_INITIAL

    def send(self, payload: bytes, now: float) -> None:
        self._queue.append((payload, now))

    def poll(self, now: float) -> None:
        while self._queue and now >= self._next_try:
            payload, first = self._queue[0]
            try:
                self._post(self.cfg.url, payload, self.cfg.timeout)
            except (OSError, ValueError) as exc:
                MONITOR_DELIVERY_FAILURES.labels("webhook").inc()
                if now - first >= self.cfg.retry_for:
                    self._queue.popleft()
                    log.error("alert dropped: the webhook failed for longer than retry_for: %s", exc)
                    continue
                self._next_try, self._backoff = now + self._backoff, min(self._backoff * 2, RETRY_MAX)
                log.warning("webhook failed (retrying in %.0fs): %s", self._next_try - now, exc)
                break
            self._queue.popleft()
            self._backoff = RETRY_INITIAL
        MONITOR_UNDELIVERED.labels("webhook").set(len(self._queue))

    def pending(self) -> int:
        return len(self._queue)


class Output(Protocol):
    """What :class:`AlertOutputs` needs of the delivery that must acknowledge (Kafka; a fake in tests)."""

    def send(self, payload: bytes, key: bytes, now: float) -> None: ...
    def poll(self, now: float) -> None: ...
    def pending(self) -> int: ...
    def flush(self, timeout: float) -> None: ...


class AlertOutputs:
    """Publishes messages to every output and remembers the recent ones (for the status page)."""

    def __init__(self, kafka: Output, webhook: WebhookOutput | None, source: str, recent: int,
                 clock: Clock = time.time) -> None:
        self.kafka, self.webhook, self.source, self.clock = kafka, webhook, source, clock
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(recent, 1))

    def publish(self, messages: list[AlertMessage]) -> None:
        now = self.clock()
        for msg in messages:
            MONITOR_ALERTS.labels(msg.rule, msg.kind).inc()
            _log(msg)
            data = encode(msg, self.source, now)
            payload = json.dumps(data, sort_keys=True).encode()
            self.kafka.send(payload, f"{msg.rule}/{msg.key}".encode(), now)
            if self.webhook is not None:
                self.webhook.send(payload, now)
            self.recent.append(data)

    def poll(self) -> None:
        now = self.clock()
        self.kafka.poll(now)
        if self.webhook is not None:
            self.webhook.poll(now)

    def acknowledged(self) -> bool:
        """True when Kafka has acknowledged every message published so far."""
        return self.kafka.pending() == 0

    def close(self, timeout: float) -> None:
        """Give the last messages ``timeout`` seconds to reach Kafka and one webhook attempt."""
        self.kafka.flush(timeout)
        if self.webhook is not None:
            self.webhook.poll(self.clock())


def _log(msg: AlertMessage) -> None:
    if msg.kind == ALERT:
        level = logging.ERROR if msg.severity == "critical" else logging.WARNING
        log.log(level, "ALERT [%s] %s (incident %s)", msg.severity, msg.summary, msg.incident)
    else:
        log.info("RESOLVED %s (incident %s)", msg.summary, msg.incident)
