"""What ``eventd status`` reports: supervisor's live view of every process, the manager's verdicts
(``daemon.json``), each process's own record (restarts, last error) and its metrics.

A process is healthy when it is RUNNING. The report is unhealthy when the daemon does not run,
supervisord does not answer, an enabled role has no process under the daemon, or any process is
not healthy (STARTING, BACKOFF, STOPPED by the operator, FATAL, ...).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

from eventd.config.daemon import SOCKET_NAME
from eventd.daemon import probe, runstate
from eventd.daemon.rpc import ProcInfo, RpcUnavailable, Supervisor
from eventd.daemon.runstate import DaemonState, RunRecord, Verdict


def shown_state(p: ProcInfo, v: Verdict | None) -> str:
    """supervisor's state, except: FATAL when the manager gave up on the process (supervisor says
    STOPPED or EXITED then), BACKOFF while a restart after a crash is scheduled."""
    if v is not None and v.fatal:
        return "FATAL"
    if v is not None and v.restart_at and p.state in ("EXITED", "FATAL"):
        return "BACKOFF"
    return p.state


@dataclass
class ProcessReport:
    role: str
    slot: int
    state: str
    supervisor_state: str
    pid: int | None
    uptime: float | None          # seconds in the current run
    restarts: int                 # runs since the daemon started, minus one
    note: str | None              # why it is in this state, when that is not obvious
    last_error: str | None
    last_error_at: float | None
    events_per_second: float | None
    kafka_lag: int | None

    @property
    def healthy(self) -> bool:
        return self.state == "RUNNING"


@dataclass
class Report:
    run_dir: str
    daemon_running: bool
    daemon_pid: int | None = None
    daemon_uptime: float | None = None
    config_path: str | None = None
    reload_error: str | None = None
    processes: list[ProcessReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.daemon_running and not self.problems

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["healthy"] = self.healthy
        for p, obj in zip(d["processes"], self.processes):
            p["healthy"] = obj.healthy
        return d


def _note(p: ProcInfo, v: Verdict | None, held: bool, now: float) -> str | None:
    if v is not None and v.fatal:
        return v.fatal     # the role's own words, e.g. "cannot start: MariaDB refused user …"
    if v is not None and v.restart_at and p.state in ("EXITED", "FATAL"):
        return f"restart in {max(v.restart_at - now, 0):.0f}s (crash {v.crashes} in a row)"
    if held and p.state in ("STOPPED", "EXITED", "STOPPING"):
        return "stopped by the operator (eventd stop)"
    if p.state in ("BACKOFF", "FATAL", "EXITED") and p.spawnerr:
        return p.spawnerr
    return None


def process_report(p: ProcInfo, v: Verdict | None, rec: RunRecord | None, held: bool,
                   rates: probe.Rates | None, now: float) -> ProcessReport:
    live = p.state in ("STARTING", "RUNNING", "STOPPING") and p.pid > 0
    return ProcessReport(
        role=p.group, slot=p.slot, state=shown_state(p, v), supervisor_state=p.state,
        pid=p.pid if live else None, uptime=max(now - p.start, 0.0) if live else None,
        restarts=max(rec.starts - 1, 0) if rec else 0, note=_note(p, v, held, now),
        last_error=rec.error if rec else None, last_error_at=rec.error_at if rec else None,
        events_per_second=rates.events_per_second if rates else None, kafka_lag=rates.lag if rates else None)


def collect(run_dir: str, sample_interval: float = 1.0) -> Report:
    """The whole report for the daemon using ``run_dir``. It describes the configuration the daemon
    runs (from ``daemon.json``), not the file on disk, which may have changed since."""
    report = Report(run_dir, runstate.daemon_running(run_dir))
    if not report.daemon_running:
        report.problems.append(f"the eventd daemon is not running (no lock held in {run_dir})")
        return report
    state = DaemonState.read(run_dir) or DaemonState(0, time.time(), "?")
    report.daemon_pid, report.config_path = state.pid or None, state.config_path
    report.daemon_uptime, report.reload_error = time.time() - state.started_at, state.reload_error
    try:
        procs = Supervisor(os.path.join(run_dir, SOCKET_NAME)).processes()
    except RpcUnavailable as exc:
        report.problems.append(str(exc))
        return report
    live = {p.name: state.metrics[p.name] for p in procs if p.state == "RUNNING" and p.name in state.metrics}
    rates = probe.rates(live, sample_interval) if sample_interval > 0 else {}
    now = time.time()
    for p in procs:
        rec = RunRecord.read(run_dir, p.group, p.slot)
        pr = process_report(p, state.verdicts.get(p.full_name), rec, runstate.is_held(run_dir, p.group),
                            rates.get(p.name), now)
        report.processes.append(pr)
        if not pr.healthy:
            report.problems.append(f"{p.name} is {pr.state}" + (f": {pr.note}" if pr.note else ""))
    groups = {p.group for p in procs}
    report.problems += [f"{r} is enabled but has no process under the daemon" for r in state.roles if r not in groups]
    return report


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _row(p: ProcessReport, now: float) -> str:
    rate = "-" if p.events_per_second is None else f"{p.events_per_second:.1f}"
    lag = "-" if p.kafka_lag is None else str(p.kafka_lag)
    error = ""
    if p.last_error:
        error = f"last error {_duration(now - p.last_error_at) if p.last_error_at else '?'} ago: {p.last_error}"
    detail = "; ".join(x for x in (p.note, error) if x)
    return (f"{p.role:<19} {p.slot:>4}  {p.state:<9} {p.pid or '-':>7}  {_duration(p.uptime):>7}  "
            f"{p.restarts:>8}  {rate:>9}  {lag:>8}  {detail}").rstrip()


def format_text(r: Report) -> str:
    now = time.time()
    if not r.daemon_running:
        return f"eventd: not running (run_dir {r.run_dir})"
    lines = [f"eventd: running, pid {r.daemon_pid or '?'}, up {_duration(r.daemon_uptime)}, "
             f"config {r.config_path or '?'}"]
    if r.reload_error:
        lines.append(f"last reload REFUSED (the previous configuration runs): {r.reload_error}")
    if r.processes:
        lines.append(f"{'ROLE':<19} {'PROC':>4}  {'STATE':<9} {'PID':>7}  {'UPTIME':>7}  {'RESTARTS':>8}  "
                     f"{'EVENTS/S':>9}  {'LAG':>8}  NOTE")
        lines += [_row(p, now) for p in r.processes]
    lines.append("healthy" if r.healthy else "UNHEALTHY: " + "; ".join(r.problems))
    return "\n".join(lines)
