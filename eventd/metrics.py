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
QUEUE_CORRUPT_BYTES = Counter("eventd_queue_corrupt_bytes_total",
                              "Bytes of a local queue skipped as corrupt (torn writes after a crash or power loss)",
                              ["role"])
QUEUE_UNACKED = Gauge("eventd_queue_unacked_events", "Events in the local queue not yet acknowledged by Kafka",
                      ["role"])

HDFS_FILES = Counter("eventd_hdfs_files_total", "Avro files moved into their final place in HDFS", ["role"])
HDFS_BYTES = Counter("eventd_hdfs_bytes_total", "Bytes of Avro files moved into their final place in HDFS", ["role"])
HDFS_FAILURES = Counter("eventd_hdfs_failures_total", "Failed attempts to place a flush in HDFS (retried)",
                        ["role", "kind"])
HDFS_BACKPRESSURE = Gauge("eventd_hdfs_backpressure", "1 while staging is full and consumption is paused", ["role"])

BALANCE_WINDOWS = Counter("eventd_balance_windows_total",
                          "Balance windows by outcome: applied, already_applied (a retried commit that had "
                          "succeeded), lost (another aggregator had applied the partition)", ["role", "outcome"])
MONEY_APPLIED = Counter("eventd_balance_money_micros_total", "Money applied to MariaDB, in micro-units",
                        ["role", "kind"])
CAMPAIGNS_STOPPED = Counter("eventd_campaigns_stopped_total", "Campaigns stopped because a budget was reached",
                            ["role", "reason"])
OUTBOX_PENDING = Gauge("eventd_outbox_pending", "Outbox messages sent or to delete, not yet settled", ["role"])


# The monitor role (docs/roles/monitor.md).
MONITOR_ALERTS = Counter("eventd_monitor_alerts_total", "Alert and resolved messages raised, by rule",
                         ["rule", "kind"])
MONITOR_OPEN = Gauge("eventd_monitor_open_incidents", "Incidents open now, by rule", ["rule"])
MONITOR_DELIVERY_FAILURES = Counter("eventd_monitor_delivery_failures_total",
                                    "Alert deliveries that failed (Kafka: retried; webhook: retried for retry_for)",
                                    ["output"])
MONITOR_UNDELIVERED = Gauge("eventd_monitor_undelivered_alerts", "Alert messages not yet acknowledged", ["output"])
MONITOR_DELAY = Gauge("eventd_monitor_evaluation_delay_seconds",
                      "How far the monitor's evaluated data time is behind the wall clock")
MONITOR_EVAL_SECONDS = Histogram("eventd_monitor_evaluation_seconds", "Time to evaluate one rule at one step",
                                 ["rule"], buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5))
MONITOR_KEYS = Gauge("eventd_monitor_tracked_keys", "Distinct keys in a rule's windows", ["rule"])
MONITOR_DROPPED = Counter("eventd_monitor_events_not_counted_total",
                          "Events a rule could not count: too late for its windows, or past max_keys",
                          ["rule", "reason"])

def serve(host: str, port: int) -> None:
    """Start the endpoint in a daemon thread; a port in use is logged, not fatal (metrics are optional)."""
    try:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
    except OSError as exc:
        log.warning("metrics endpoint %s:%d not started: %s", host, port, exc)
