"""Entry point of a role process started by the daemon:
``python -m eventd.daemon.child ROLE --slot N --snapshot FILE``.

It is ``eventd role ROLE --slot N`` (:func:`eventd.roles.base.run_role`) plus three things the
daemon needs and supervisor does not provide:

- the configuration comes from the daemon's frozen snapshot (see :mod:`eventd.daemon.snapshot`);
- the run is recorded in ``run_dir/procs/<role>-<slot>.json``: start, exit code and the last error
  logged, because supervisor drops the exit code of a process that exits within ``startsecs``
  and keeps no error text;
- a role whose package cannot be imported can never start as installed: ``EXIT_CANNOT_START``.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
import time

from eventd.config import Config
from eventd.daemon.runstate import RunRecord
from eventd.daemon.snapshot import load_snapshot, section_of
from eventd.errors import EXIT_CANNOT_START, EXIT_CONFIG
from eventd.logs import setup_logging
from eventd.roles import ROLE_MODULES, role_module

log = logging.getLogger(__name__)


class LastError(logging.Handler):
    """Remembers the last ERROR (or worse) record, first line only, for ``eventd status``."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:   # a broken format string must not break the role
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.message = (text.splitlines() or [""])[0][:500]
        self.at = record.created


def _begin(run_dir: str, role: str, slot: int) -> RunRecord:
    """Record the start of this run, carrying the run count and the last error forward."""
    before = RunRecord.read(run_dir, role, slot)
    rec = RunRecord(role, slot, os.getpid(), time.time(),
                    starts=(before.starts + 1) if before else 1,
                    error=before.error if before else None, error_at=before.error_at if before else None)
    rec.write(run_dir)
    return rec


def _end(rec: RunRecord, run_dir: str, code: int, errors: LastError) -> None:
    rec.exited_at, rec.exit_code = time.time(), code
    if errors.message is not None:
        rec.error, rec.error_at = errors.message, errors.at
    rec.write(run_dir)


def _importable(role: str) -> bool:
    try:
        role_module(role)
    except ImportError as exc:
        log.error("cannot start: the role's package %s does not import: %s", ROLE_MODULES[role], exc)
        return False
    return True


def run(cfg: Config, role: str, slot: int) -> int:
    """Run one process of ``role`` under the daemon; returns the exit code."""
    from eventd.roles.base import run_role
    setup_logging(role, section_of(cfg, role).role.log_level or cfg.node.log_level)
    errors = LastError()
    logging.getLogger("eventd").addHandler(errors)
    rec = _begin(cfg.daemon.run_dir, role, slot)
    code = run_role(cfg, role, slot) if _importable(role) else EXIT_CANNOT_START
    _end(rec, cfg.daemon.run_dir, code, errors)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="eventd-role", description="a role process under the eventd daemon")
    p.add_argument("role", choices=list(ROLE_MODULES))
    p.add_argument("--slot", type=int, default=0)
    p.add_argument("--snapshot", required=True, help="the daemon's frozen configuration for this role")
    args = p.parse_args(argv)
    try:
        cfg = load_snapshot(args.snapshot)
    except (OSError, ValueError, EOFError, ImportError, AttributeError, pickle.UnpicklingError) as exc:
        # The daemon writes the snapshot before it starts the process: this is a broken install.
        print(f"eventd {args.role}: cannot read the configuration snapshot {args.snapshot}: {exc}",
              file=sys.stderr)
        return EXIT_CONFIG
    return run(cfg, args.role, args.slot)


if __name__ == "__main__":
    raise SystemExit(main())
