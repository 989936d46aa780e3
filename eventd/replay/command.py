"""``eventd replay FILE... [--to kafka|clickhouse|balances|hdfs] [--rejects PATH] [--dry-run]``.

Wiring only: check the inputs, build the parser and the target, run the pipeline over each
input, wait for the destination, print the summary, return the exit code:

- ``0``  every line went in (blank lines aside; lines delivered by an earlier run count as in);
- ``65`` (EX_DATAERR) every valid line went in, but some lines were rejected (see --rejects);
- ``1``  failed (unreadable input, destination down …): what was acknowledged is recorded,
  running the same command again finishes the job without duplicates;
- ``130`` interrupted (Ctrl-C / SIGTERM): stopped after recording what was acknowledged.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
import zlib

from eventd.config import Config
from eventd.errors import EventdError
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore
from eventd.kafka.types import KafkaError
from eventd.logs import setup_logging
from eventd.replay.pipeline import Pipeline
from eventd.replay.progress import Progress
from eventd.replay.reader import open_input
from eventd.replay.rejects import Rejects
from eventd.replay.sinks import ReplayFailed, Target, open_target
from eventd.replay.summary import Counts, render

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 65
EXIT_INTERRUPTED = 130


def check_inputs(files: list[str]) -> None:
    """Fail before anything is sent if an input cannot be read."""
    if files.count("-") > 1:
        raise ReplayFailed("stdin (-) can be given only once")
    for path in files:
        if path != "-" and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ReplayFailed(f"{path}: not a readable file")


def ledger_root(cfg: Config) -> str:
    """Where resume points are kept: ``<node.state_dir>/replay``."""
    return os.path.join(cfg.node.state_dir, "replay")


def replay(cfg: Config, args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Run the command; returns the process exit code (see the module docstring)."""
    setup_logging("replay", cfg.node.log_level)
    if stop is None:
        from eventd.roles.base import install_stop_handlers
        stop = threading.Event()
        install_stop_handlers(stop)
    counts, started = Counts(), time.monotonic()
    target_name = args.to
    try:
        outcome = _run(cfg, args, stop, counts)
    except (EventdError, KafkaError, OSError, EOFError, zlib.error) as exc:
        log.error("replay failed: %s", exc)
        outcome = "failed"
    print(render(counts, time.monotonic() - started, target_name, args.dry_run, outcome), flush=True)
    if outcome == "failed":
        return EXIT_FAILED
    if outcome == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_REJECTED if counts.rejected_total else EXIT_OK


def _run(cfg: Config, args: argparse.Namespace, stop: threading.Event, counts: Counts) -> str:
    check_inputs(args.files)
    store = SchemaStore.load(cfg.events.schema_dir)
    parser = EventParser(store, cfg.events, cfg.kafka.topics.prefix, cfg.kafka.topics.partitions, cfg.node.host)
    target = open_target(args.to, cfg, store, args.dry_run, stop)
    rejects = Rejects(args.rejects)
    progress = Progress()
    pipeline = Pipeline(parser, target, counts, rejects, progress, stop,
                        None if args.dry_run else ledger_root(cfg), cfg.events.max_line_size)
    try:
        _replay_inputs(pipeline, args.files, stop)
        pipeline.finish()
        return "interrupted" if stop.is_set() else "done"
    except BaseException:
        _salvage(pipeline)
        raise
    finally:
        counts.duplicates = target.already
        progress.finish()
        pipeline.close()
        rejects.close()
        _close(target)


def _replay_inputs(pipeline: Pipeline, files: list[str], stop: threading.Event) -> None:
    for path in files:
        if stop.is_set():
            return
        inp = open_input(path)
        try:
            log.info("replaying %s", inp.name)
            pipeline.run_input(inp)
        finally:
            inp.close()


def _salvage(pipeline: Pipeline) -> None:
    """After a failure, record what the destination did acknowledge, so a re-run skips it."""
    try:
        pipeline.finish()
    except Exception as exc:  # the destination itself is what failed: nothing more to record
        log.debug("nothing more recorded: %s", exc)


def _close(target: Target) -> None:
    try:
        target.close()
    except Exception as exc:
        log.warning("closing %s: %s", target.name, exc)


__all__ = ["replay", "EXIT_OK", "EXIT_FAILED", "EXIT_REJECTED", "EXIT_INTERRUPTED"]
