"""The dead-letter topic: messages a role could not process, with why and where from.

Each dead letter keeps the original bytes as its value and carries headers
``eventd.reason``, ``eventd.role``, ``eventd.source`` (``topic/partition/offset``).
:class:`InvalidLimit` stops a role when the invalid share of the recent stream passes the
configured ratio: "everything is invalid" means a bug or a wrong schema, not bad input.
"""

from __future__ import annotations

import collections
import logging

from eventd.config.common import DeadLetterConfig
from eventd.errors import EventdError, ServiceUnavailable
from eventd.kafka.clients import DELIVERY_TIMEOUT
from eventd.kafka.producer import Producer
from eventd.kafka.types import KafkaTimeoutError
from eventd.metrics import REJECTED

log = logging.getLogger(__name__)


class DeadLetterFailed(ServiceUnavailable):
    """Kafka refused a dead letter or did not acknowledge it in time. The role stops before
    committing past the message; its restart reads the message again and resends the letter."""


class TooManyInvalid(EventdError):
    """The invalid share passed ``dead_letter.max_invalid_ratio``; the role must stop."""


class InvalidLimit:
    """Sliding window over the last ``window`` messages, counting the invalid ones.

    Only the positions of invalid messages are kept (at most ``window``), so a run of valid
    messages costs one addition (``valid(n)``): the consumer loop reports whole runs."""

    def __init__(self, cfg: DeadLetterConfig) -> None:
        self.cfg = cfg
        self._seen = 0                                       # messages recorded so far
        self._invalid: collections.deque[int] = collections.deque()   # their positions (1-based), recent ones

    def valid(self, n: int = 1) -> None:
        """``n`` more valid messages."""
        self._seen += n

    def invalid(self) -> None:
        """One more invalid message; raises :class:`TooManyInvalid` when the last ``window``
        messages (once that many were seen) hold more than the allowed share."""
        self._seen += 1
        window, recent = self.cfg.window, self._invalid
        recent.append(self._seen)
        while recent[0] <= self._seen - window:      # left the window (the newest never has)
            recent.popleft()
        if self._seen >= window and len(recent) > self.cfg.max_invalid_ratio * window:
            raise TooManyInvalid(f"{len(recent)} of the last {window} messages were invalid "
                                 f"(limit {self.cfg.max_invalid_ratio:.0%}); stopping instead of discarding "
                                 f"the stream: check the schemas and the producers")

    def record(self, invalid: bool) -> None:
        """One more message, valid or not."""
        if invalid:
            self.invalid()
        else:
            self.valid()


class DeadLetter:
    """Sends dead letters through the role's producer; ``flush`` before committing past them."""

    def __init__(self, producer: Producer, topic: str, role: str) -> None:
        self.producer, self.topic, self.role = producer, topic, role
        self._failed: list[str] = []      # appended on the producer's poll thread (list.append is atomic)

    def send(self, value: bytes, reason: str, topic: str, partition: int, offset: int,
             key: bytes | None = None) -> None:
        label = reason.split(":", 1)[0][:60]
        REJECTED.labels(self.role, label).inc()
        log.warning("dead letter %s/%d/%d: %s", topic, partition, offset, reason)
        headers = [("eventd.reason", reason.encode()), ("eventd.role", self.role.encode()),
                   ("eventd.source", f"{topic}/{partition}/{offset}".encode())]
        self.producer.send(self.topic, value, key=key, headers=headers, on_done=self._done)

    def _done(self, error: Exception | None) -> None:
        if error is not None:
            self._failed.append(f"{type(error).__name__}: {error}")

    def flush(self, timeout: float = DELIVERY_TIMEOUT + 30.0) -> None:
        """Return once every dead letter sent so far is in Kafka; raise :class:`DeadLetterFailed`
        if one was refused, or if Kafka did not answer within ``timeout`` (longer than the
        producer's own delivery timeout: a producer wedged after broker restarts must not hang
        the role, which a restart cures)."""
        try:
            self.producer.flush(timeout)
        except KafkaTimeoutError as exc:
            raise DeadLetterFailed(f"dead letters not acknowledged by Kafka within {timeout:.0f}s: {exc}") from None
        if self._failed:
            raise DeadLetterFailed(f"Kafka refused {len(self._failed)} dead letter(s), first: {self._failed[0]}")
