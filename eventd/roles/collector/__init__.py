"""The collector role: takes JSON events from the web app (HTTP, TCP, unix socket, UDP, unix
datagrams, file tail), answers at once, and delivers every accepted event to Kafka as Avro.

Threads: the main thread runs the input loop (asyncio: parse, encode, append to the queue, answer);
``sender`` reads the queue and produces to Kafka; ``queue-syncer`` runs the fsync policy;
the Kafka producer has its poll thread (and librdkafka its own). Nothing the inputs do waits on Kafka.
See docs/roles/collector.md.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from eventd.kafka.producer import Producer
from eventd.roles.base import RoleContext
from eventd.roles.collector.adopt import Adopted, adopt_retired
from eventd.roles.collector.intake import Intake
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.sender import Sender
from eventd.roles.collector.server import Server
from eventd.roles.collector.syncer import Syncer
from eventd.roles.collector.tail import Tailer

log = logging.getLogger(__name__)

# The input loop must get the GIL back quickly when a client is waiting for its answer, even while
# the sender and the producer's poll thread are busy: 5 ms (CPython's default) would be the answer time.
SWITCH_INTERVAL = 0.0005


def main(ctx: RoleContext) -> None:
    """Run until ``ctx.stop``; then stop the inputs, sync the queue, give Kafka ``drain_timeout``."""
    cfg, kafka = ctx.config.collector, ctx.config.kafka
    sys.setswitchinterval(SWITCH_INTERVAL)
    queue = DurableQueue.open(cfg.queue.slot_dir(ctx.slot), cfg.queue.segment_size, cfg.queue.max_size)

    def connect() -> Producer:
        return Producer(kafka, f"collector-{ctx.slot}")

    syncer = Syncer(queue, cfg.queue.fsync, cfg.queue.fsync_interval)
    sender = Sender(queue, connect, cfg.max_in_flight_events, kafka.producer.max_in_flight_bytes,
                    name=f"sender-{ctx.slot}")
    adopted: list[Adopted] = []
    tailer: Tailer | None = None
    drain = 0.0     # a start that failed does not wait for Kafka
    try:
        syncer.start()
        sender.start()
        if ctx.slot == 0:
            adopted = adopt_retired(cfg.queue, cfg.role.processes, connect, cfg.max_in_flight_events,
                                    kafka.producer.max_in_flight_bytes)
        intake = Intake(ctx.parser(), queue, cfg.max_errors_reported)
        if cfg.tail.enabled and ctx.slot == 0:
            tailer = Tailer(cfg.tail, intake, syncer, ctx.config.node.host, ctx.config.events.max_line_size)
        server = Server(cfg, ctx.slot, intake, syncer, _status(queue, intake, sender),
                        ctx.config.events.max_line_size, tailer)
        asyncio.run(_serve(server, ctx))
        drain = cfg.drain_timeout
    finally:
        _shut_down(queue, syncer, sender, adopted, tailer, drain)


async def _serve(server: Server, ctx: RoleContext) -> None:
    await server.start()
    log.info("collector slot %d accepting events", ctx.slot)
    try:
        await server.serve_until(ctx.stop)
    finally:
        await server.close()


def _shut_down(queue: DurableQueue, syncer: Syncer, sender: Sender, adopted: list[Adopted],
               tailer: Tailer | None, drain: float) -> None:
    """Inputs are closed: fsync the queue, save tail positions, let Kafka take the backlog, persist
    the acknowledged position."""
    syncer.stop()
    if tailer is not None:
        tailer.save()
        tailer.close()
    delivered = sender.stop(drain)
    for a in adopted:
        a.stop(drain)
    queue.close()
    if delivered:
        log.info("stopped: every accepted event is in Kafka")
    else:
        log.info("stopped: %d accepted events wait in the queue for the next start", sender.unacked)


def _status(queue: DurableQueue, intake: Intake, sender: Sender):  # type: ignore[no-untyped-def]
    """The /healthz answer: 503 while the queue refuses events."""
    def status() -> tuple[int, dict[str, Any]]:
        full = intake.full
        return (503 if full else 200), {
            "status": "refusing events: queue full" if full else "ok",
            "queue_bytes": queue.size_bytes, "queue_max_bytes": queue.max_size,
            "unacked_events": sender.unacked, "kafka": "connected" if sender.connected else "not connected"}
    return status
