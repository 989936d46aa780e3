"""Crash points for the fault-injection tests, shared by every role.

``EVENTD_FAILPOINTS="name=N[:stop][,name=N…]"`` makes the process SIGKILL itself (or, with
``:stop``, SIGSTOP itself) the N-th time it reaches ``failpoint(name)``. A ``kill -9`` from
outside rarely lands exactly between an INSERT and the commit after it, or between a COMMIT
and the next statement; these points make such cases tests that hit every time.
Unset (always, in production) each call costs one dictionary lookup.

The points each role defines are listed in its docs/roles/<role>.md.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
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
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Signal this process if ``name`` is armed and this is its N-th hit."""
    point = _armed.get(name)
    if point is None:
        return
    with _lock:
        point.remaining -= 1
        if point.remaining != 0:
            return
    log.warning("failpoint %s reached: sending this process %s", name, point.signal.name)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), point.signal)
