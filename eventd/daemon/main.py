"""``eventd run``: the manager process.

It renders supervisord.conf, runs supervisord as its child, starts every enabled role, and then
loops: signals (only recorded by their handlers, acted on here), the restart policy, the systemd
watchdog, and ``daemon.json`` for ``eventd status``.

- SIGTERM / SIGINT: every role is asked to stop at once (SIGTERM); supervisor SIGKILLs a role
  still running after ``daemon.stop_timeout``; then supervisord exits and so does the manager,
  with code 0. A second SIGTERM/SIGINT kills the roles at once (safe by the roles' guarantees).
- SIGHUP: :mod:`eventd.daemon.reload`.
- supervisord dying on its own: its roles are stopped and the manager exits ``EXIT_TEMPORARY``
  so that systemd (``Restart=on-failure``) starts everything afresh.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import shutil
import signal
import sys
import time
from types import FrameType
from typing import IO

from eventd.config import Config
from eventd.daemon import runstate, snapshot
from eventd.daemon.policy import Action, RestartPolicy
from eventd.daemon.probe import endpoints
from eventd.daemon.report import shown_state
from eventd.daemon.rpc import RUNNING_STATES, ProcInfo, RpcFault, RpcUnavailable, Supervisor
from eventd.daemon.runstate import DaemonState, RunRecord
from eventd.daemon.supervisor_conf import CONF_NAME, enabled_roles, render
from eventd.daemon.supervisord import SupervisordProcess, kill_pids, stop_orphans
from eventd.daemon.systemd import Notifier
from eventd.errors import EXIT_CANNOT_START, EXIT_OK, EXIT_TEMPORARY
from eventd.logs import setup_logging

log = logging.getLogger(__name__)

TICK = 0.5                 # seconds between polls of supervisord
STARTUP_TIMEOUT = 30.0     # seconds for supervisord to answer after it was started
STOP_GRACE = 5.0           # beyond stop_timeout, for supervisor's own SIGKILL to take effect
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Manager:
    def __init__(self, cfg: Config, notifier: Notifier | None = None, python: str = sys.executable) -> None:
        self.cfg = cfg
        self.python = python          # interpreter of the role processes (tests substitute a fake)
        self.run_dir = cfg.daemon.run_dir
        self.salt = os.urandom(16)
        self.rpc = Supervisor(cfg.daemon.socket_path)
        self.policy = RestartPolicy(cfg.daemon.restart_backoff, cfg.daemon.restart_backoff_max)
        self.notifier = notifier or Notifier()
        self.state = DaemonState(os.getpid(), time.time(), cfg.path)
        self.supervisord = SupervisordProcess(os.path.join(self.run_dir, CONF_NAME))
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.deferred: list[int] = []
        self.pids: dict[str, int] = {}     # pids of the last poll: what to stop if supervisord dies
        self._written = ""
        self._status = ""

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.put(signum)   # SimpleQueue.put is safe in a signal handler; the loop acts

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def next_signal(self, timeout: float) -> int | None:
        if self.deferred:
            return self.deferred.pop(0)
        try:
            return self.signals.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop_requested(self) -> bool:
        """True if a SIGTERM/SIGINT is pending (kept pending for the main loop)."""
        while True:
            try:
                self.deferred.append(self.signals.get_nowait())
            except queue.Empty:
                break
        return any(s in STOP_SIGNALS for s in self.deferred)

    # ------------------------------------------------------------------ configuration
    def prepare_run_dir(self) -> None:
        """Create run_dir; forget the previous daemon's runs, holds and snapshots."""
        os.makedirs(self.run_dir, mode=0o750, exist_ok=True)
        for sub in (runstate.PROCS, runstate.HELD, "config"):
            shutil.rmtree(os.path.join(self.run_dir, sub), ignore_errors=True)
            os.makedirs(os.path.join(self.run_dir, sub), mode=0o700 if sub == "config" else 0o750)
        for stale in (self.cfg.daemon.socket_path, os.path.join(self.run_dir, runstate.DAEMON_STATE)):
            if os.path.exists(stale):
                os.unlink(stale)   # we hold the lock: nobody else uses them

    def write_supervisor_conf(self, cfg: Config) -> set[str]:
        """Write each enabled role's snapshot and supervisord.conf for ``cfg``; returns the snapshots."""
        snapshots = {}
        for role in enabled_roles(cfg):
            path = snapshot.snapshot_path(os.path.join(self.run_dir, "config"), role,
                                          snapshot.fingerprint(cfg, role, self.salt))
            if not os.path.exists(path):
                snapshot.write_snapshot(cfg, path)
            snapshots[role] = path
        self.state.roles = enabled_roles(cfg)
        self.state.metrics = endpoints(cfg, {r: snapshot.section_of(cfg, r).role.processes for r in self.state.roles})
        conf = os.path.join(self.run_dir, CONF_NAME)
        with open(conf + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(render(cfg, snapshots, self.python))
        os.replace(conf + ".tmp", conf)
        return set(snapshots.values())

    # ------------------------------------------------------------------ start
    def start(self) -> IO[str] | None:
        """Everything up to READY; returns the lock, or None when the daemon must exit."""
        try:
            os.makedirs(self.run_dir, mode=0o750, exist_ok=True)
            lock = runstate.take_lock(self.run_dir)
        except OSError as exc:
            log.error("cannot use daemon.run_dir %s: %s", self.run_dir, exc)
            return None
        if lock is None:
            log.error("another eventd daemon is running with run_dir %s", self.run_dir)
            return None
        self.prepare_run_dir()
        self.write_supervisor_conf(self.cfg)
        self.supervisord.start()
        if not self._wait_supervisord():
            self.supervisord.terminate(10)
            lock.close()
            return None
        for role in enabled_roles(self.cfg):
            n = snapshot.section_of(self.cfg, role).role.processes
            try:
                self.rpc.start_group(role)
                log.info("started %s (%d process%s)", role, n, "es" if n > 1 else "")
            except (RpcFault, RpcUnavailable) as exc:   # the loop notices a dead supervisord
                log.error("starting %s failed: %s", role, exc)
        self._settle()
        self.notifier.ready(self._summary())
        return lock

    def _wait_supervisord(self) -> bool:
        end = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < end:
            code = self.supervisord.exit_code()
            if code is not None:
                log.error("supervisord exited with code %s at start (its log lines above say why)", code)
                return False
            try:
                if self.rpc.state() == "RUNNING":
                    return True
            except RpcUnavailable:
                pass
            time.sleep(0.1)
        log.error("supervisord did not answer on %s within %.0fs", self.rpc.socket_path, STARTUP_TIMEOUT)
        return False

    def _settle(self) -> None:
        """Wait until no process is STARTING (or start_seconds + 5 s), so READY means started."""
        end = time.monotonic() + self.cfg.daemon.start_seconds + 5
        while time.monotonic() < end and not self.stop_requested():
            self.supervise()
            try:
                if not any(p.state == "STARTING" for p in self.rpc.processes()):
                    return
            except RpcUnavailable:
                return
            time.sleep(TICK)

    # ------------------------------------------------------------------ the loop
    def loop(self) -> int:
        while True:
            sig = self.next_signal(TICK)
            if sig in STOP_SIGNALS:
                log.info("%s: stopping every role (deadline %ds)", signal.Signals(sig).name,
                         self.cfg.daemon.stop_timeout)
                return self.shutdown()
            if sig == signal.SIGHUP:
                from eventd.daemon.reload import reload
                reload(self)
            code = self.supervisord.exit_code()
            if code is not None:
                return self._supervisord_died(code)
            self.supervise()

    def supervise(self) -> None:
        """One poll: apply the restart policy to every process; ping the watchdog if all went well."""
        try:
            procs = self.rpc.processes()
        except RpcUnavailable as exc:
            log.warning("%s", exc)
            return
        now = time.time()
        self.pids = {p.full_name: p.pid for p in procs if p.pid}
        for p in procs:
            self._apply_policy(p, now)
        self.state.verdicts = self.policy.verdicts
        self._publish(procs)
        self.notifier.watchdog()

    def _apply_policy(self, p: ProcInfo, now: float) -> None:
        before = self.policy.verdicts.get(p.full_name)
        was_fatal, was_scheduled = (before.fatal, before.restart_at) if before else (None, None)
        rec = RunRecord.read(self.run_dir, p.group, p.slot)
        action = self.policy.decide(p, rec, runstate.is_held(self.run_dir, p.group), now)
        v = self.policy.verdicts[p.full_name]
        if v.fatal and not was_fatal:
            log.error("%s: %s. Not restarting it: fix the cause, then `eventd start %s`",
                      p.full_name, v.fatal, p.group)
        if v.restart_at and not was_scheduled:
            log.warning("%s %s: restarting in %.1fs (crash %d in a row)", p.full_name,
                        f"exited with code {p.exitstatus}" if p.state == "EXITED" else "gave up (FATAL)",
                        v.restart_at - now, v.crashes)
        try:
            if action is Action.START:
                self.rpc.start(p.full_name)
            elif action is Action.STOP:
                self.rpc.stop(p.full_name)
        except RpcFault as exc:
            log.warning("%s %s: %s", action.value, p.full_name, exc.faultString)

    def _publish(self, procs: list[ProcInfo]) -> None:
        """daemon.json when it changed; systemd STATUS= when the summary changed."""
        text = json.dumps(dataclasses.asdict(self.state), sort_keys=True)
        if text != self._written:
            self.state.write(self.run_dir)
            self._written = text
        summary = self._summary(procs)
        if summary != self._status:
            self.notifier.status(summary)
            self._status = summary

    def _summary(self, procs: list[ProcInfo] | None = None) -> str:
        try:
            procs = procs if procs is not None else self.rpc.processes()
        except RpcUnavailable:
            return "supervisord not answering"
        counts: dict[str, int] = {}
        for p in procs:
            state = shown_state(p, self.policy.verdicts.get(p.full_name))
            counts[state] = counts.get(state, 0) + 1
        return ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no roles enabled"

    # ------------------------------------------------------------------ stop
    def wait_stopped(self, groups: list[str] | None, deadline: float) -> bool:
        """Wait until no process of ``groups`` (None: all) runs; SIGKILL them at ``deadline`` or on
        a second stop signal. False if a stop signal arrived (it stays pending for the loop)."""
        forced = False
        while True:
            try:
                live = [p for p in self.rpc.processes()
                        if p.state in RUNNING_STATES and (groups is None or p.group in groups)]
            except RpcUnavailable:
                return True
            if not live:
                return True
            if not forced and (time.monotonic() > deadline or (groups is None and self._second_stop())):
                log.warning("killing %s now", ", ".join(f"{p.full_name} (pid {p.pid})" for p in live))
                kill_pids([p.pid for p in live])
                forced = True
            if groups is not None and self.stop_requested():
                return False
            if time.monotonic() > deadline + 10:
                log.error("still running after SIGKILL: %s", ", ".join(p.full_name for p in live))
                return True
            self.notifier.watchdog()
            time.sleep(0.1)

    def _second_stop(self) -> bool:
        sig = self.next_signal(0)
        if sig in STOP_SIGNALS:
            log.warning("second %s: not waiting for a graceful stop", signal.Signals(sig).name)
            return True
        return False

    def shutdown(self) -> int:
        self.notifier.stopping()
        try:
            self.rpc.stop_all()
        except (RpcUnavailable, RpcFault) as exc:
            log.error("asking supervisord to stop the roles failed: %s", exc)
        stopped_in_time = self.wait_stopped(None, time.monotonic() + self.cfg.daemon.stop_timeout + STOP_GRACE)
        self.supervisord.terminate(10)
        log.info("stopped%s", "" if stopped_in_time else " (some roles were killed)")
        return EXIT_OK

    def _supervisord_died(self, code: int) -> int:
        log.error("supervisord exited unexpectedly (code %s): stopping the roles it left, then exiting", code)
        stop_orphans(list(self.pids.values()), self.cfg.daemon.stop_timeout)
        return EXIT_TEMPORARY


def run_daemon(cfg: Config, python: str = sys.executable) -> int:
    """``eventd run``: supervise every enabled role until SIGTERM; the process exit code."""
    setup_logging("daemon", cfg.node.log_level)
    manager = Manager(cfg, python=python)
    manager.install_signal_handlers()
    lock = manager.start()
    if lock is None:
        return EXIT_CANNOT_START
    try:
        from eventd.daemon.status_page import start_status_page
        page = start_status_page(cfg)
        try:
            return manager.loop()
        finally:
            if page:
                page.close()
    finally:
        lock.close()
