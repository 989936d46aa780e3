"""Queues left by collector slots that no longer run (``processes`` was lowered): slot 0 sends
what they still hold, then removes them — an accepted event is never stranded in a directory
nobody reads."""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from typing import Callable

from eventd.config.collector import QueueConfig
from eventd.errors import CannotStart
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.sender import ProducerLike, Sender

log = logging.getLogger(__name__)

_SLOT_DIR = re.compile(r"^slot-(\d+)$")


@dataclass
class Adopted:
    queue: DurableQueue
    sender: Sender

    def stop(self, drain_timeout: float) -> None:
        drained = self.sender.stop(drain_timeout)
        self.queue.close()
        if drained:
            shutil.rmtree(self.queue.dir, ignore_errors=True)
            log.info("retired queue %s delivered and removed", self.queue.dir)


def adopt_retired(cfg: QueueConfig, processes: int, connect: Callable[[], ProducerLike],
                  max_in_flight_events: int, max_in_flight_bytes: int) -> list[Adopted]:
    """Start a draining sender for each ``slot-N`` directory with N >= ``processes``."""
    try:
        names = os.listdir(cfg.dir)
    except FileNotFoundError:
        return []
    out = []
    for name in sorted(names):
        m = _SLOT_DIR.match(name)
        if not m or int(m.group(1)) < processes:
            continue
        try:
            queue = DurableQueue.open(os.path.join(cfg.dir, name), cfg.segment_size, cfg.max_size)
        except CannotStart as exc:   # still in use (an old process is stopping): next start takes it
            log.warning("retired queue %s not adopted now: %s", name, exc)
            continue
        log.warning("queue %s belongs to a slot that no longer runs: sending its %d events", queue.dir,
                    queue.next_seq - queue.acked_seq)
        sender = Sender(queue, connect, max_in_flight_events, max_in_flight_bytes, name=f"sender-{name}",
                        until_empty=True)
        sender.start()
        out.append(Adopted(queue, sender))
    return out
