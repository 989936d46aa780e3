"""The Kafka names the rest of eventd uses — a partition, a committed position, a send's future,
the client's errors — imported from here only, so that ``eventd/kafka/`` is the one package that
knows the client library (kafka-python)."""

from __future__ import annotations

from kafka.errors import (CommitFailedError, KafkaError, KafkaTimeoutError, RebalanceInProgressError,
                          TopicAlreadyExistsError)
from kafka.producer.future import FutureRecordMetadata as SendFuture
from kafka.structs import OffsetAndMetadata, TopicPartition

__all__ = ["CommitFailedError", "KafkaError", "KafkaTimeoutError", "OffsetAndMetadata", "RebalanceInProgressError",
           "SendFuture", "TopicAlreadyExistsError", "TopicPartition", "retriable"]


def retriable(exc: BaseException) -> bool:
    """A Kafka error the client says may pass (a broker down, a leader moving), not a misuse."""
    return isinstance(exc, KafkaError) and bool(exc.retriable)
