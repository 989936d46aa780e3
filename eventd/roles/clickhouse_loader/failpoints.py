"""Crash points for the kill -9 tests: ``EVENTD_FAILPOINTS="name=N[,name=N]"`` makes the Nth
pass through :func:`failpoint` ``name`` send SIGKILL to this very process — a real kill -9
at an exact line (e.g. after the INSERT, before the offsets are committed), which a test
cannot hit reliably from outside. Unset (always, in production) it costs one dict lookup.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
ENV = "EVENTD_FAILPOINTS"


def _parse(text: str) -> dict[str, int]:
    points = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        points[name.strip()] = int(count or 1)
    return points


_armed = _parse(os.environ.get(ENV, ""))
_passes: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is armed and this is its Nth pass."""
    if name not in _armed:
        return
    with _lock:
        _passes[name] = _passes.get(name, 0) + 1
        if _passes[name] != _armed[name]:
            return
    log.warning("failpoint %s reached (pass %d): killing this process with SIGKILL", name, _armed[name])
    os.kill(os.getpid(), signal.SIGKILL)
