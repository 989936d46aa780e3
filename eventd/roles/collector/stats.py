"""The collector's metrics, with the role label bound once (label lookups are not free on the hot path)."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter

from eventd import metrics

ROLE = "collector"

CORRUPT_BYTES = metrics.QUEUE_CORRUPT_BYTES.labels(ROLE)
QUEUE_BYTES = metrics.QUEUE_BYTES.labels(ROLE)
UNACKED = metrics.QUEUE_UNACKED.labels(ROLE)
SENT = metrics.EVENTS_OUT.labels(ROLE, "kafka")
KAFKA_ERRORS = metrics.SINK_ERRORS.labels(ROLE, "kafka")


@lru_cache(maxsize=None)
def events_in(input_name: str) -> Counter:
    """Accepted events (appended to the queue) by input."""
    return metrics.EVENTS_IN.labels(ROLE, input_name)


@lru_cache(maxsize=4096)
def rejected(reason: str) -> Counter:
    """Events not accepted, by reason: ``field:<name>``, ``json``, ``utf8``, ``size``, ``queue_full`` …"""
    return metrics.REJECTED.labels(ROLE, reason)
