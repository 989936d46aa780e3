"""Fault points for the fault-injection tests: ``EVENTD_FAILPOINTS=name=N[:stop][,name=N…]``
makes the process SIGKILL itself (or, with ``:stop``, SIGSTOP itself) the N-th time it reaches
``failpoint(name)``.

A ``kill -9`` from outside rarely lands between COMMIT and the next statement, and a SIGSTOP
from outside rarely lands inside a transaction; these points make such cases tests that run
every time. Unset (always, in production), each call is one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

log = logging.getLogger(__name__)
ENV = "EVENTD_FAILPOINTS"
_SIGNALS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}


@dataclass
class _Point:
    remaining: int
    signal: signal.Signals


def _parse(text: str) -> dict[str, _Point]:
    points = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, spec = item.partition("=")
        count, _, action = (spec or "1").partition(":")
        points[name.strip()] = _Point(int(count), _SIGNALS[action or "kill"])
    return points


_armed = _parse(os.environ.get(ENV, ""))


def failpoint(name: str) -> None:
    """Signal this process if ``name`` is armed and this is its N-th hit."""
    point = _armed.get(name)
    if point is None:
        return
    point.remaining -= 1
    if point.remaining == 0:
        log.warning("failpoint %s: sending this process %s", name, point.signal.name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), point.signal)
