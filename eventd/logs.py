"""Logging to stderr, one line per record with the role and pid (journald adds the time too,
but a line read from a file must stand alone)."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s [%(role)s:%(process)d] %(name)s: %(message)s"


def setup_logging(role: str, level: str) -> None:
    """Configure the root logger for this process. Safe to call again after a fork."""
    old_factory = logging.getLogRecordFactory()

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        record = old_factory(*args, **kwargs)
        record.role = role
        return record

    logging.setLogRecordFactory(factory)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
