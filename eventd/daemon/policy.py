"""The restart policy: what to do with a process that is not running, given supervisor's state and
the process's own record of how its last run ended.

supervisor alone cannot meet eventd's requirements, in three ways (see docs/operations.md):

1. It ignores exit codes of a process that dies within ``startsecs`` (it even forgets them), so a
   role that reports "cannot start" (``EXIT_CANNOT_START``, ``EXIT_CONFIG``) would be retried
   ``startretries`` times; and one that reports it later would be restarted forever.
   → such a process is stopped at once and reported FATAL with its reason; never restarted.
2. It restarts a process that crashed after ``startsecs`` immediately, with no backoff.
   → ``autorestart=false``; a crash is restarted after ``restart_backoff`` × 2^(crashes-1),
   capped at ``restart_backoff_max``; a run of ``restart_backoff_max`` resets the count.
3. After ``startretries`` quick failures it gives up for good (FATAL), even when the cause is
   temporary (Kafka down while the host boots).
   → a FATAL process whose last exit was not "cannot start" is tried again after
   ``restart_backoff_max``.
"""

from __future__ import annotations

import enum

from eventd.daemon.rpc import ProcInfo
from eventd.daemon.runstate import RunRecord, Verdict
from eventd.errors import EXIT_CANNOT_START, EXIT_CONFIG

CANNOT_START = (EXIT_CANNOT_START, EXIT_CONFIG)


class Action(enum.Enum):
    NONE = "none"
    START = "start"   # start the process (a scheduled restart is due)
    STOP = "stop"     # stop it (it is in supervisor's BACKOFF after reporting "cannot start")


def cannot_start_reason(info: ProcInfo, rec: RunRecord | None) -> str | None:
    """Why the process's latest run said it can never start, or None if it did not say so."""
    if rec is not None and rec.describes_run_started(info.start) and rec.exit_code in CANNOT_START:
        return rec.error or f"exited with code {rec.exit_code} (cannot start)"
    if info.state == "EXITED" and info.exitstatus in CANNOT_START:
        return f"exited with code {info.exitstatus} (cannot start)"
    return None


class RestartPolicy:
    """Keeps a :class:`Verdict` per process (``group:name``) and decides one action per poll."""

    def __init__(self, backoff: float, backoff_max: float) -> None:
        self.backoff, self.backoff_max = backoff, backoff_max
        self.verdicts: dict[str, Verdict] = {}
        self._fatal_start: dict[str, int] = {}   # supervisor's start time of the run judged FATAL

    def delay(self, crashes: int) -> float:
        return min(self.backoff * 2 ** max(crashes - 1, 0), self.backoff_max)

    def forget(self, name: str) -> None:
        """The process was removed or replaced (reload): start afresh."""
        self.verdicts.pop(name, None)
        self._fatal_start.pop(name, None)

    def decide(self, info: ProcInfo, rec: RunRecord | None, held: bool, now: float) -> Action:
        v = self.verdicts.setdefault(info.full_name, Verdict())
        if v.fatal is not None:
            if self._fatal_start.get(info.full_name) == info.start and info.state != "STARTING":
                return Action.NONE              # still the run judged FATAL
            v.fatal = None                      # the operator started it again
        if info.state in ("STARTING", "RUNNING", "STOPPING"):
            return self._alive(v, info, now)
        reason = cannot_start_reason(info, rec) if info.state != "STOPPED" else None
        if reason is not None:
            return self._fatal(v, info, reason)
        if info.state in ("EXITED", "FATAL") and not held:
            return self._crashed(v, info, now)
        v.restart_at = None                     # STOPPED, BACKOFF (supervisor retries), or held
        return Action.NONE

    def _alive(self, v: Verdict, info: ProcInfo, now: float) -> Action:
        v.restart_at = None
        if info.state == "RUNNING" and now - info.start >= self.backoff_max:
            v.crashes = 0
        return Action.NONE

    def _fatal(self, v: Verdict, info: ProcInfo, reason: str) -> Action:
        v.fatal, v.restart_at = reason, None
        self._fatal_start[info.full_name] = info.start
        return Action.STOP if info.state == "BACKOFF" else Action.NONE

    def _crashed(self, v: Verdict, info: ProcInfo, now: float) -> Action:
        if v.restart_at is None:
            v.crashes += 1
            wait = self.backoff_max if info.state == "FATAL" else self.delay(v.crashes)
            v.restart_at = now + wait
        if now >= v.restart_at:
            v.restart_at = None
            return Action.START
        return Action.NONE
