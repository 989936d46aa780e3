"""Crash points for the kill -9 tests, with the same convention as the other roles:
``EVENTD_FAILPOINTS="name=N[,name=N]"`` makes the Nth pass through :func:`failpoint` ``name``
send SIGKILL to this very process. The uploader's points:

- ``hdfs-upload-midway``: half of a file sent to the DataNode;
- ``hdfs-before-rename``: a temporary file complete in HDFS, not renamed;
- ``hdfs-after-rename``: a file in its final place, its flush not committed.

Unset (always, in production) it costs one dict lookup per file placed.
"""

from __future__ import annotations

import logging
import os
import signal

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


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is armed and this is its Nth pass."""
    if name not in _armed:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == _armed[name]:
        log.warning("failpoint %s reached (pass %d): killing this process with SIGKILL", name, _armed[name])
        os.kill(os.getpid(), signal.SIGKILL)
