"""The monitor's small state file (``monitor.state_file``): what Kafka has been told.

It is written — atomically: temporary file, fsync, rename — only when every alert published so
far has been acknowledged by Kafka, and holds:

- ``evaluated``: per rule, the data time (ms) of the last step judged with its messages delivered. After a restart the monitor re-reads its history from Kafka (the windows
  live in memory) but judges only steps after this time, so it does not alert twice;
- ``incidents``: the open incidents, so an incident open before a restart is not announced again
  and still gets its resolved message;
- ``recent``: the last alert messages, which the daemon's status page shows
  (:func:`read_recent_alerts`).

A crash between Kafka's acknowledgement and the rename re-sends those alerts with the same ids:
alerts are at-least-once. A missing file is a first start; an unreadable one is logged and
ignored (the worst outcome is a repeated alert, never a missed one).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from eventd.roles.monitor.incidents import Incident

log = logging.getLogger(__name__)
VERSION = 1


@dataclass
class MonitorState:
    evaluated: dict[str, int] = field(default_factory=dict)
    incidents: list[Incident] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)


def load_state(path: str) -> MonitorState:
    """The saved state; an empty one when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if data.get("version") != VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        return MonitorState({str(k): int(v) for k, v in data["evaluated"].items()},
                            [Incident.from_dict(i) for i in data["incidents"]], list(data.get("recent", [])))
    except FileNotFoundError:
        return MonitorState()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable monitor state %s (alerts may repeat once): %s", path, exc)
        return MonitorState()


def save_state(path: str, state: MonitorState) -> None:
    """Replace the file atomically; raises OSError (the caller logs it and tries again later)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    data = {"version": VERSION, "evaluated": state.evaluated,
            "incidents": [i.as_dict() for i in state.incidents], "recent": state.recent}
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_recent_alerts(path: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alert messages first, for the status page (empty without a monitor)."""
    return list(reversed(load_state(path).recent[-limit:])) if os.path.exists(path) else []
