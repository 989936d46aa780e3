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
from eventd.errors import EventdError
from eventd.kafka.producer import Producer
from eventd.metrics import REJECTED

log = logging.getLogger(__name__)


class TooManyInvalid(EventdError):
    """The invalid share passed ``dead_letter.max_invalid_ratio``; the role must stop."""


class InvalidLimit:
    """Sliding window over the last ``window`` messages: True for invalid ones."""

    def __init__(self, cfg: DeadLetterConfig) -> None:
        self.cfg = cfg
        self._recent: collections.deque[bool] = collections.deque(maxlen=cfg.window)
        self._invalid = 0

    def record(self, invalid: bool) -> None:
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._invalid -= 1
        self._recent.append(invalid)
        self._invalid += invalid
        if invalid and len(self._recent) == self.cfg.window and \
                self._invalid > self.cfg.max_invalid_ratio * self.cfg.window:
            raise TooManyInvalid(f"{self._invalid} of the last {self.cfg.window} messages were invalid "
                                 f"(limit {self.cfg.max_invalid_ratio:.0%}); stopping instead of discarding "
                                 f"the stream: check the schemas and the producers")


class DeadLetter:
    """Sends dead letters through the role's producer; ``flush`` before committing past them."""

    def __init__(self, producer: Producer, topic: str, role: str) -> None:
        self.producer, self.topic, self.role = producer, topic, role

    def send(self, value: bytes, reason: str, topic: str, partition: int, offset: int,
             key: bytes | None = None) -> None:
        label = reason.split(":", 1)[0][:60]
        REJECTED.labels(self.role, label).inc()
        log.warning("dead letter %s/%d/%d: %s", topic, partition, offset, reason)
        headers = [("eventd.reason", reason.encode()), ("eventd.role", self.role.encode()),
                   ("eventd.source", f"{topic}/{partition}/{offset}".encode())]
        self.producer.send(self.topic, value, key=key, headers=headers)

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)
