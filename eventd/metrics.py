"""Every metric eventd exports, defined once. Each role process serves its own endpoint
(``metrics.listen`` port + the process's slot), so processes under one daemon never clash.

Names follow Prometheus conventions; the ``role`` label is set once per process.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

EVENTS_IN = Counter("eventd_events_in_total", "Events or messages taken in", ["role", "input"])
EVENTS_OUT = Counter("eventd_events_out_total", "Events delivered to the role's sink", ["role", "sink"])
REJECTED = Counter("eventd_events_rejected_total", "Events rejected or dead-lettered, by reason", ["role", "reason"])
DUPLICATES = Counter("eventd_duplicates_skipped_total", "Events skipped as already seen (same event id)", ["role"])
BATCH_ROWS = Histogram("eventd_batch_rows", "Rows per flushed batch", ["role"],
                       buckets=(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000))
FLUSH_SECONDS = Histogram("eventd_flush_seconds", "Time to write one batch to the sink", ["role"])
SINK_ERRORS = Counter("eventd_sink_errors_total", "Failed sink writes (retried)", ["role", "sink"])
LAG = Gauge("eventd_kafka_lag", "Messages behind the partition's end", ["role", "topic", "partition"])
QUEUE_BYTES = Gauge("eventd_queue_bytes", "Bytes in the local durable queue or staging", ["role"])


def serve(host: str, port: int) -> None:
    """Start the endpoint in a daemon thread; a port in use is logged, not fatal (metrics are optional)."""
    try:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
    except OSError as exc:
        log.warning("metrics endpoint %s:%d not started: %s", host, port, exc)
