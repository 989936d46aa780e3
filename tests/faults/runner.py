"""Runs one fault scenario against the whole pipeline and returns its row.

A run: provision a fresh world (topics, databases, HDFS directory), start ``eventd run`` with all
four roles, stream events into the collector's HTTP input, let the scenario inject its faults
while events flow, clear them, send a last batch (the probe: every role must still make
progress), wait until every acknowledged event has reached every sink, then check the invariants
(:mod:`faults.invariants`) and the daemon's log. The world is dropped afterwards."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ServiceFault, TestEnv
from pipeline import ROLES, Daemon, Sender, daemon_settings, provision, set_budgets, teardown

from faults.invariants import Findings, check, unexpected_tracebacks, wait_delivered
from faults.scenarios import SCENARIOS, Context, Scenario

# Campaign 1 runs out of budget a few hundred events in; campaign 3's budget is never reached.
BUDGETS = {1: 400_000, 3: 10**12}


@dataclass
class Row:
    """One scenario's outcome: the table row of docs/reliability.md."""
    scenario: str
    seed: int
    cycles: int
    offered: int = 0
    findings: Findings = field(default_factory=Findings)
    recovery_s: float | None = None
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings.violations and self.recovery_s is not None

    def problems(self) -> list[str]:
        return self.findings.violations + ([] if self.recovery_s is not None else ["not every acknowledged "
                                                                                    "event was delivered in time"])


class MemorySampler:
    """Samples the peak RSS (VmHWM) of every role process of the daemon once a second; a process
    restarted after a kill is a new process with its own peak, and the role keeps the larger."""

    def __init__(self, run_dir: Path) -> None:
        self.procs = run_dir / "procs"
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        import json
        while not self._stop.wait(1.0):
            for rec in self.procs.glob("*.json"):
                try:
                    data = json.loads(rec.read_text())
                    status = Path(f"/proc/{data['pid']}/status").read_text()
                except (OSError, ValueError, KeyError, TypeError):
                    continue       # between runs, or the process just died
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        mib = int(line.split()[1]) / 1024
                        self.peak[data["role"]] = max(self.peak.get(data["role"], 0.0), mib)


def run(scenario: Scenario, tmp: Path, seed: int, cycles: int, rate: int, log=print,
        keep_failed: bool = False) -> Row:
    """Run ``scenario`` in a fresh world under ``tmp``; ``rate``: events/s offered while it runs.
    ``keep_failed``: a failed row leaves its databases and HDFS directory for a post-mortem."""
    env = TestEnv(tmp)
    row = Row(scenario.name, seed, cycles)
    settings = daemon_settings(env)
    with ExitStack() as stack:
        ctx = Context(env=env, settings=settings, rng=random.Random(seed), cycles=cycles, log=log)
        stack.callback(ctx.cleanup)
        scenario.prepare(ctx)
        provision(env, settings)
        stack.callback(lambda: None if keep_failed and not row.ok else teardown(env))
        set_budgets(env.db, BUDGETS)
        if scenario.services:
            stack.enter_context(ServiceFault(*scenario.services))
        daemon = ctx.daemon = Daemon(env, env.tmp / "eventd.yaml")
        stack.callback(daemon.close)
        sender = ctx.sender = Sender(env, f"{env.id}-{scenario.name}")
        sampler = stack.enter_context(MemorySampler(env.tmp / "run"))
        daemon.wait_serving(ROLES, timeout=180)
        sender.start_stream(per_batch=max(1, rate // 10), pause=0.1)
        time.sleep(2)                        # events flowing before the first fault
        errors: list[str] = []
        try:
            scenario.fault(ctx)
        except (AssertionError, OSError, subprocess.SubprocessError) as exc:
            # e.g. the collector never accepted again: a finding of this scenario, not a crash of the suite
            errors.append(f"the scenario could not run to its end: {type(exc).__name__}: {exc}")
        finally:
            cleared = time.monotonic()       # recovery is counted from here
            sender.stop_stream()
        try:
            daemon.wait_serving(ROLES, timeout=180)
            sender.send(50)                  # the probe: sent after the faults, must reach every sink
        except AssertionError as exc:
            errors.append(f"the pipeline did not recover: {exc}"[:2000])
        row.recovery_s = wait_delivered(env, sender, scenario.recovery_timeout, since=cleared)
        time.sleep(3)                        # duplicates, if any, would show up now
        row.offered = len(sender.offered)
        row.findings = check(env, sender, BUDGETS)
        row.findings.violations += errors + scenario.verify(ctx)
        row.findings.violations += [f"unexpected traceback after: {t}" for t in unexpected_tracebacks(daemon.log_path)]
        row.peak_rss_mib = dict(sampler.peak)
        row.notes = ctx.notes + [f"answers {dict(sender.answers)}"]
        code, _ = daemon.stop()
        if code != 0:
            row.findings.violations.append(f"eventd run exited {code} on SIGTERM")
    return row


def table(rows: list[Row]) -> str:
    """The markdown table of docs/reliability.md."""
    out = ["| scenario | seed | cycles | offered | acked | ClickHouse rows | HDFS records | balances | lost | "
           "duplicated | recovery s | peak RSS MiB (role) | verdict |",
           "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        f = r.findings
        peak = max(r.peak_rss_mib.items(), key=lambda kv: kv[1], default=("", 0.0))
        rec = "–" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        verdict = "ok" if r.ok else "FAILED: " + "; ".join(r.problems())[:300]
        out.append(f"| {r.scenario} | {r.seed} | {r.cycles} | {r.offered:,} | {f.acked:,} | {f.clickhouse:,} | "
                   f"{f.hdfs:,} | {f.balances} | {f.lost} | {f.duplicated} | {rec} | "
                   f"{peak[1]:.0f} ({peak[0]}) | {verdict} |")
    return "\n".join(out)


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def describe(row: Row) -> dict[str, Any]:
    """The row as data (for the JSON results file)."""
    f = row.findings
    return {"scenario": row.scenario, "seed": row.seed, "cycles": row.cycles, "offered": row.offered,
            "acked": f.acked, "clickhouse": f.clickhouse, "hdfs": f.hdfs, "balances": f.balances, "lost": f.lost,
            "duplicated": f.duplicated, "recovery_s": row.recovery_s, "peak_rss_mib": row.peak_rss_mib,
            "ok": row.ok, "problems": row.problems(), "notes": row.notes}
