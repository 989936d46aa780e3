"""The role contract: what every role gets, and how ``eventd role NAME`` runs one.

A role's ``main(ctx)`` runs in the foreground until ``ctx.stop`` is set (SIGTERM or SIGINT),
then stops taking input, finishes or hands back in-flight work, commits what is done and
returns; the process then exits 0. Exit codes tell the supervisor what happened:
``EXIT_CANNOT_START`` (do not restart), ``EXIT_TEMPORARY`` (restart with backoff).
A second SIGTERM/SIGINT exits at once — safe by every role's own guarantees.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from dataclasses import dataclass
from functools import cached_property
from types import FrameType

from eventd.config import Config
from eventd.errors import EXIT_CANNOT_START, EXIT_OK, EXIT_TEMPORARY, CannotStart, ServiceUnavailable
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore
from eventd.logs import setup_logging
from eventd import metrics

log = logging.getLogger(__name__)


@dataclass
class RoleContext:
    """What a role gets: the validated config, its name and slot, and the stop signal."""

    config: Config
    role: str
    slot: int
    stop: threading.Event

    @cached_property
    def schemas(self) -> SchemaStore:
        return SchemaStore.load(self.config.events.schema_dir)

    def parser(self) -> EventParser:
        c = self.config
        return EventParser(self.schemas, c.events, c.kafka.topics.prefix, c.kafka.topics.partitions, c.node.host)


def install_stop_handlers(stop: threading.Event) -> None:
    """First SIGTERM/SIGINT sets ``stop``; a second one exits immediately."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(EXIT_TEMPORARY)
        log.info("%s: stopping gracefully", signal.Signals(signum).name)
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_role(config: Config, role: str, slot: int = 0) -> int:
    """Run ``role`` in this process until stopped; returns the process exit code."""
    from eventd.roles import role_module
    section = getattr(config, role.replace("-", "_"))
    setup_logging(role, section.role.log_level or config.node.log_level)
    stop = threading.Event()
    install_stop_handlers(stop)
    if config.metrics.enabled:
        metrics.serve(config.metrics.host, config.metrics.base_port + _metrics_offset(config, role, slot))
    try:
        module = role_module(role)
        # Everything loaded so far (modules, config, schemas: a few hundred thousand objects) lives
        # as long as the process: keep it out of the garbage collector's full scans, which otherwise
        # stop every thread for 40–55 ms every few seconds under load (the collector's answer tail).
        gc.freeze()
        module.main(RoleContext(config, role, slot, stop))
    except CannotStart as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CANNOT_START
    except Exception as exc:
        if is_outage(exc):
            # An outage, not a bug: one line, no traceback; the daemon restarts the role with backoff.
            log.error("stopping, to be restarted: %s: %s", type(exc).__name__, exc)
        else:
            log.exception("role failed")
        return EXIT_TEMPORARY
    log.info("stopped")
    return EXIT_OK


def is_outage(exc: BaseException) -> bool:
    """A service outage: eventd's own :class:`ServiceUnavailable`, or a Kafka error eventd
    classes as retriable (broker unreachable, bootstrap timed out, coordinator moving)."""
    from eventd.kafka.types import retriable
    return isinstance(exc, ServiceUnavailable) or retriable(exc)


def _metrics_offset(config: Config, role: str, slot: int) -> int:
    """Ports: roles in a fixed order, each taking ``processes`` consecutive ports."""
    from eventd.roles import ROLE_MODULES
    offset = 0
    for name in ROLE_MODULES:
        if name == role:
            return offset + slot
        offset += getattr(config, name.replace("-", "_")).role.processes
    return offset + slot
