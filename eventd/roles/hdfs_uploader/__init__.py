"""The HDFS uploader role: every event topic → Avro container files in HDFS, exactly once,
partitioned by event type, date and hour of event time. See docs/roles/hdfs-uploader.md.

- ``records.py``    message → record body (validated, no re-encoding) and its file's (type, hour)
- ``container.py``  Avro Object Container Files from raw bodies; codecs
- ``staging.py``    local staging files of each flush; byte totals
- ``partition.py``  a partition's stream cut into flushes (contiguous offset ranges)
- ``layout.py``     HDFS paths and file names, and parsing them back
- ``recovery.py``   the flush recorded in Kafka's commit metadata; where a partition resumes
- ``publish.py``    a sealed flush placed in HDFS: temporary name, rename, checked
- ``webhdfs.py``    the WebHDFS client (every call bounded, every answer checked)
- ``transport.py``  one HTTP exchange under a total deadline
- ``sink.py``       the consumer-loop sink tying it together; backpressure; backoff
- ``failpoints.py`` SIGKILL at a named point, for the kill -9 tests
"""

from __future__ import annotations

import logging
import os

from eventd.config import Config
from eventd.config.hdfs import HdfsUploaderConfig
from eventd.errors import CannotStart, EventdError
from eventd.kafka.consumer import new_consumer
from eventd.kafka.consumer_loop import ConsumerLoop, FatalSinkError, LoopSettings
from eventd.kafka.deadletter import DeadLetter, InvalidLimit, TooManyInvalid
from eventd.kafka.producer import Producer
from eventd.kafka.topics import event_topics
from eventd.roles.base import RoleContext
from eventd.roles.hdfs_uploader.layout import tmp_dir
from eventd.roles.hdfs_uploader.publish import Publisher
from eventd.roles.hdfs_uploader.records import RecordReader
from eventd.roles.hdfs_uploader.sink import HdfsSink
from eventd.roles.hdfs_uploader.staging import Staging
from eventd.roles.hdfs_uploader.webhdfs import HdfsError, HdfsRefused, HdfsUnavailable, WebHdfs

log = logging.getLogger(__name__)
# The loop's batches only feed staging; files are rolled by roll_size / roll_age.
BATCH_ITEMS = 10_000
BATCH_AGE = 0.5


def client_for(h: HdfsUploaderConfig) -> WebHdfs:
    return WebHdfs(h.namenode_host, h.namenode_port, h.user, h.timeout, h.min_upload_rate)


def main(ctx: RoleContext) -> None:
    """Archive until ``ctx.stop``; then place what is staged (within the drain time) and commit."""
    cfg, h = ctx.config, ctx.config.hdfs_uploader
    client = client_for(h)
    _check_base(client, h.base_dir)
    staging = _staging(h, ctx)
    t = cfg.kafka.topics
    reader = RecordReader(ctx.schemas, h.verify_records,
                          lambda family: cfg.events.route(family, t.prefix, t.partitions).topic)
    sink = HdfsSink(h, reader, staging, Publisher(client, h.base_dir), ctx.role)
    producer = Producer(cfg.kafka, f"{ctx.role}-{ctx.slot}")
    settings = LoopSettings(ctx.role, event_topics(cfg, ctx.schemas), BATCH_ITEMS, BATCH_AGE,
                            drain_timeout=max(1.0, min(30.0, cfg.daemon.stop_timeout * 0.75)),
                            backoff_initial=h.retry_backoff, backoff_max=h.retry_backoff_max)
    loop = ConsumerLoop(settings, new_consumer(cfg.kafka, f"{ctx.role}-{ctx.slot}", h.group_id), sink,
                        DeadLetter(producer, t.dead_letter, ctx.role), InvalidLimit(h.dead_letter))
    try:
        loop.run(ctx.stop)
    except (FatalSinkError, TooManyInvalid) as exc:
        raise CannotStart(str(exc)) from exc   # restarting cannot help: an operator must act
    finally:
        producer.close()


def _check_base(client: WebHdfs, base: str) -> None:
    """The base directory must exist (``eventd setup``). HDFS being down is no reason not to
    start: files wait in staging until it answers."""
    try:
        status = client.status(base)
    except HdfsUnavailable as exc:
        log.warning("HDFS does not answer (%s); starting anyway, files are placed once it does", exc)
        return
    except HdfsRefused as exc:
        raise CannotStart(f"HDFS refuses access to {base}: {exc}") from None
    if status is None:
        raise CannotStart(f"HDFS directory {base} does not exist: run `eventd setup`")
    if status.get("type") != "DIRECTORY":
        raise CannotStart(f"HDFS path {base} is not a directory")


def _staging(h: HdfsUploaderConfig, ctx: RoleContext) -> Staging:
    root = os.path.join(h.staging_dir, f"slot-{ctx.slot}")
    try:
        return Staging(root, h.codec, h.block_size, ctx.role)
    except OSError as exc:
        raise CannotStart(f"cannot use staging directory {root}: {exc}") from None


def setup(cfg: Config) -> list[str]:
    """``eventd setup``: the base directory and its ``_tmp`` directory in HDFS. Idempotent."""
    h = cfg.hdfs_uploader
    client = client_for(h)
    changes = []
    try:
        for directory in (h.base_dir, tmp_dir(h.base_dir)):
            status = client.status(directory)
            if status is None:
                client.mkdirs(directory)
                changes.append(f"created HDFS directory {directory}")
            elif status.get("type") != "DIRECTORY":
                raise EventdError(f"HDFS path {directory} exists and is not a directory")
    except HdfsError as exc:
        raise EventdError(f"HDFS at {h.namenode_host}:{h.namenode_port}: {exc}") from None
    return changes
