"""The Kafka names the rest of eventd uses — a partition, a committed position, a send's future,
the client's errors. They are eventd's own types: ``eventd/kafka/`` is the one package that knows
the client library (confluent-kafka, i.e. librdkafka), and converts at its edge.

Why own types: confluent-kafka's ``TopicPartition`` is mutable (offset, metadata, error fields)
yet eventd uses partitions as dict keys and sorts them; and librdkafka's ``retriable()`` flag is
False even for a broker that is simply down, so the classification below is eventd's.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import confluent_kafka

__all__ = ["CommitFailedError", "KafkaError", "KafkaTimeoutError", "OffsetAndMetadata", "RetriableKafkaError",
           "SendFuture", "TopicAlreadyExistsError", "TopicPartition", "client_errors", "from_client", "retriable"]

_E = confluent_kafka.KafkaError


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class OffsetAndMetadata(NamedTuple):
    """A committed position: the next offset to read, and the text stored with it."""
    offset: int
    metadata: str | None
    leader_epoch: int = -1


# The group moved on without this member (evicted, generation changed): its commit is refused,
# and the partitions' new owner redoes the uncommitted work.
_REBALANCED = {_E.UNKNOWN_MEMBER_ID, _E.ILLEGAL_GENERATION, _E.REBALANCE_IN_PROGRESS, _E.FENCED_INSTANCE_ID,
               _E._MAX_POLL_EXCEEDED, _E.STALE_MEMBER_EPOCH}
# The cluster cannot answer for now (down, unreachable, electing): it may pass. Measured with
# librdkafka 2.16: its own ``retriable()`` is False for all the local ones (docs/port probes).
_UNAVAILABLE = {_E._TRANSPORT, _E._ALL_BROKERS_DOWN, _E._TIMED_OUT, _E._WAIT_COORD, _E._MSG_TIMED_OUT,
                _E._RESOLVE, _E._TIMED_OUT_QUEUE, _E.COORDINATOR_NOT_AVAILABLE, _E.NOT_COORDINATOR,
                _E.COORDINATOR_LOAD_IN_PROGRESS, _E.REQUEST_TIMED_OUT, _E.NETWORK_EXCEPTION,
                _E.LEADER_NOT_AVAILABLE, _E.NOT_LEADER_FOR_PARTITION, _E.NOT_ENOUGH_REPLICAS,
                _E.NOT_ENOUGH_REPLICAS_AFTER_APPEND, _E._DESTROY}


class KafkaError(Exception):
    """An error from Kafka or its client. ``retriable``: an outage that may pass, not a misuse."""

    retriable = False

    def __init__(self, message: str, code: int | None = None, name: str = "") -> None:
        super().__init__(message)
        self.code, self.name = code, name


class RetriableKafkaError(KafkaError):
    retriable = True


class KafkaTimeoutError(RetriableKafkaError):
    """Kafka did not answer within eventd's own deadline."""


class CommitFailedError(KafkaError):
    """A commit refused because the group rebalanced this member away."""


class TopicAlreadyExistsError(KafkaError):
    pass


def from_client(exc: BaseException | _E, what: str = "") -> KafkaError:
    """The eventd error for a confluent-kafka ``KafkaException`` or ``KafkaError``."""
    err = exc.args[0] if isinstance(exc, confluent_kafka.KafkaException) and exc.args else exc
    if not isinstance(err, _E):
        return KafkaError(f"{what}{exc}")
    code, name = err.code(), err.name()
    text = f"{what}{name}: {err.str()}"
    if code in _REBALANCED:
        return CommitFailedError(text, code, name)
    if code == _E.TOPIC_ALREADY_EXISTS:
        return TopicAlreadyExistsError(text, code, name)
    if code in (_E._TIMED_OUT, _E._MSG_TIMED_OUT):
        return KafkaTimeoutError(text, code, name)
    if (code in _UNAVAILABLE or err.retriable()) and not err.fatal():
        return RetriableKafkaError(text, code, name)
    return KafkaError(text, code, name)


class client_errors:
    """``with client_errors("listing the topics: "):`` — a confluent-kafka ``KafkaException``
    raised inside leaves as eventd's error (``from_client``), its text prefixed with ``what``;
    anything else passes through unchanged."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if isinstance(exc, confluent_kafka.KafkaException):
            raise from_client(exc, self.what) from None
        return False


def retriable(exc: BaseException) -> bool:
    """A Kafka error that may pass (a broker down, a leader moving), not a misuse."""
    return isinstance(exc, KafkaError) and exc.retriable


class SendFuture:
    """The outcome of one produced message, set once on the producer's delivery thread
    (plain attributes: a send costs a few microseconds, so no lock or event per message)."""

    __slots__ = ("is_done", "exception")

    def __init__(self) -> None:
        self.is_done = False
        self.exception: KafkaError | None = None

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def complete(self, error: KafkaError | None) -> None:
        self.exception = error
        self.is_done = True
