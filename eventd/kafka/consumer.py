"""The Kafka consumer as the consumer loop sees it: eventd's partitions, messages and errors over
confluent-kafka's ``Consumer``, and a deadline on every call that can wait for the broker.

Contracts the loop relies on:

- rebalance callbacks run inside :meth:`poll`, on the caller's thread (librdkafka serves them
  there); ``on_assigned`` returns where each new partition starts and the partitions are
  assigned at exactly those offsets — nothing of them is read before;
- :meth:`poll` reads one message per librdkafka call, so a message returned after a rebalance
  is never one fetched for the previous assignment (librdkafka drops those when it hands out
  the next message); what was read before the rebalance is discarded with the revocation;
- :meth:`commit` returns or raises within its deadline even when the group coordinator is gone
  (librdkafka's synchronous commit has no timeout of its own; probes saw it wait for
  ``session.timeout.ms``, and once for over 215 s).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable

import confluent_kafka
from confluent_kafka import OFFSET_INVALID, OFFSET_STORED

from eventd.config.common import KafkaConfig
from eventd.errors import ServiceUnavailable
from eventd.kafka.batch import Message
from eventd.kafka.clients import ErrorLog, consumer_config
from eventd.kafka.types import OffsetAndMetadata, TopicPartition, client_errors, from_client

log = logging.getLogger(__name__)

Assigned = Callable[[list[TopicPartition]], dict[TopicPartition, int]]
Revoked = Callable[[list[TopicPartition]], None]
Records = dict[TopicPartition, list[Message]]
CALL_TIMEOUT = 30.0       # committed(), watermarks, offsets for times
COMMIT_TIMEOUT = 60.0     # a synchronous commit that has not returned by then is given up
CLOSE_TIMEOUT = 15.0      # leaving the group takes up to session.timeout.ms without a coordinator


class ConsumerStuck(ServiceUnavailable):
    """A commit never answered: the role exits and the daemon restarts it (with a new consumer)."""


def new_consumer(cfg: KafkaConfig, suffix: str, group_id: str) -> "Consumer":
    client = confluent_kafka.Consumer(consumer_config(cfg, suffix, group_id))
    return Consumer(client, cfg.consumer.max_poll_records)


class Consumer:
    """One group member. Not thread-safe: the loop's thread only (a commit runs on a thread of
    its own, so that the loop can stop waiting for it, see :meth:`commit`)."""

    def __init__(self, client: confluent_kafka.Consumer, max_records: int) -> None:
        self._c = client
        self._max_records = max_records
        self._on_assigned: Assigned | None = None
        self._on_revoked: Revoked | None = None
        self._rebalances = 0
        self._all_paused = False
        self._errors = ErrorLog("consumer")

    # -- group membership --------------------------------------------------------------
    def subscribe(self, topics: list[str], on_assigned: Assigned, on_revoked: Revoked) -> None:
        self._on_assigned, self._on_revoked = on_assigned, on_revoked
        self._c.subscribe(topics, on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke)

    def _assign(self, _c: Any, parts: list[confluent_kafka.TopicPartition]) -> None:
        self._rebalances += 1
        tps = [TopicPartition(p.topic, p.partition) for p in parts]
        starts = self._on_assigned(tps) if self._on_assigned and tps else {}
        self._c.assign([confluent_kafka.TopicPartition(tp.topic, tp.partition, starts.get(tp, OFFSET_STORED))
                        for tp in tps])
        if self._all_paused and parts:      # assigned while the loop waits with everything paused
            self._c.pause(parts)

    def _revoke(self, _c: Any, parts: list[confluent_kafka.TopicPartition]) -> None:
        self._rebalances += 1
        if self._on_revoked is not None:
            self._on_revoked([TopicPartition(p.topic, p.partition) for p in parts])
        self._c.unassign()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in self._c.assignment()}

    def topics(self) -> set[str]:
        with client_errors("listing the topics: "):
            return set(self._c.list_topics(timeout=CALL_TIMEOUT).topics)

    # -- reading -----------------------------------------------------------------------
    def poll(self, timeout: float) -> Records:
        """Up to ``max_records`` messages, waiting up to ``timeout`` for the first one."""
        out: Records = {}
        c, rebalances, limit, new = self._c, self._rebalances, self._max_records, tuple.__new__
        msg = c.poll(max(0.0, timeout))     # a negative timeout would wait forever
        n = 0
        while msg is not None:
            if self._rebalances != rebalances:   # read before the rebalance: no longer ours to keep
                out, rebalances, n = {}, self._rebalances, 0
            err = msg.error()
            if err is None:
                topic, partition = msg.topic(), msg.partition()
                # A plain (topic, partition) tuple finds the TopicPartition key (same hash, equal).
                part = out.get((topic, partition))
                if part is None:
                    part = out[TopicPartition(topic, partition)] = []
                part.append(new(Message, (topic, partition, msg.offset(), msg.key(), msg.value(),
                                          msg.timestamp()[1])))
                n += 1
                if n >= limit:
                    break
            else:
                self._poll_error(err)
            msg = c.poll(0)
        return out

    def _poll_error(self, err: Any) -> None:
        """An error event from poll (a topic missing, a broker down): the consumer goes on by
        itself; log it, rate-limited (raise if fatal)."""
        if err.fatal():
            raise from_client(err, "consumer: ")
        self._errors(err)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._c.seek(confluent_kafka.TopicPartition(tp.topic, tp.partition, offset))

    def pause_all(self) -> None:
        self._all_paused = True
        self._c.pause(self._c.assignment())

    def resume_all(self) -> None:
        self._all_paused = False
        self._c.resume(self._c.assignment())

    # -- positions ---------------------------------------------------------------------
    def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets with their metadata; None where nothing was committed."""
        with client_errors("reading the committed offsets: "):
            found = self._c.committed(_client_tps(tps), timeout=CALL_TIMEOUT)
        return {TopicPartition(p.topic, p.partition):
                None if p.offset == OFFSET_INVALID else OffsetAndMetadata(p.offset, p.metadata) for p in found}

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout: float = COMMIT_TIMEOUT) -> None:
        """Commit synchronously; raises :class:`KafkaError` on refusal (librdkafka gives up
        after about ``session.timeout.ms`` without a coordinator: retriable), and
        :class:`ConsumerStuck` if the call has not returned after ``timeout`` — then every
        other call on this consumer waits behind it, and only a new process recovers. A commit
        given up on may still complete later: commits are cumulative and every sink is
        idempotent, so that is harmless."""
        # No metadata rather than "": librdkafka sends an empty string as "\x00", which other
        # clients (kafka-python, which eventd used before) read back as a one-byte marker.
        parts = [confluent_kafka.TopicPartition(tp.topic, tp.partition, om.offset, om.metadata)
                 if om.metadata else confluent_kafka.TopicPartition(tp.topic, tp.partition, om.offset)
                 for tp, om in offsets.items()]
        call = _Call(lambda: self._c.commit(offsets=parts, asynchronous=False), "kafka-commit")
        if not call.done.wait(timeout):
            raise ConsumerStuck(f"a commit has waited for the Kafka group coordinator for {timeout:.0f}s; "
                                f"restarting the role with a new consumer")
        if isinstance(call.error, confluent_kafka.KafkaException):
            raise from_client(call.error, "commit failed: ")
        if call.error is not None:
            raise call.error
        for p in call.value or ():
            if p.error is not None:
                raise from_client(p.error, f"commit of {p.topic}/{p.partition} failed: ")

    def watermarks(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int] | None:
        """(first offset, end offset) of ``tp``; with ``cached``, the last seen (None if none yet)."""
        with client_errors(f"offsets of {tp.topic}/{tp.partition}: "):
            low, high = self._c.get_watermark_offsets(confluent_kafka.TopicPartition(tp.topic, tp.partition),
                                                      timeout=CALL_TIMEOUT, cached=cached)
        return None if high < 0 else (low, high)

    def positions(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to read of each of ``tps`` that has one yet."""
        with client_errors("positions: "):
            found = self._c.position(_client_tps(tps))
        return {TopicPartition(p.topic, p.partition): p.offset for p in found if p.offset >= 0}

    def offsets_for_times(self, tps: list[TopicPartition], t_ms: int) -> dict[TopicPartition, int | None]:
        """The first offset of each partition whose timestamp is at or after ``t_ms``; None if none."""
        query = [confluent_kafka.TopicPartition(tp.topic, tp.partition, t_ms) for tp in tps]
        with client_errors("offsets by time: "):
            found = self._c.offsets_for_times(query, timeout=CALL_TIMEOUT)
        return {TopicPartition(p.topic, p.partition): p.offset if p.offset >= 0 else None for p in found}

    def close(self) -> None:
        """Leave the group (runs ``on_revoked``); never commits; gives up after ``CLOSE_TIMEOUT``."""
        call = _Call(self._c.close, "kafka-close")
        if not call.done.wait(CLOSE_TIMEOUT):
            log.warning("the Kafka consumer did not close within %.0fs; leaving it", CLOSE_TIMEOUT)
        elif call.error is not None:
            log.warning("closing the Kafka consumer: %s", call.error)


class _Call:
    """``fn()`` on a daemon thread of its own: a caller may stop waiting for it, and a call that
    never returns does not keep the process from exiting."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._fn = fn
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            self.value = self._fn()
        except BaseException as exc:    # noqa: BLE001 - handed to the waiting caller
            self.error = exc
        finally:
            self.done.set()


def _client_tps(tps: Iterable[TopicPartition]) -> list[confluent_kafka.TopicPartition]:
    return [confluent_kafka.TopicPartition(tp.topic, tp.partition) for tp in tps]


