"""What must hold after every fault scenario, checked only through the sinks' public tables and
files and the daemon's log (never through eventd's internals).

The delivered set D is what ClickHouse's ``events`` table holds. It must contain every
*acknowledged* event (the collector answered 202) and nothing that was never offered; it may contain
an offered event whose answer was lost (the collector had queued it, then died before answering),
but every sink must then hold it too, once: HDFS holds exactly D, each id once; ClickHouse's
statistics and MariaDB's balances equal the exact sums over D; campaigns are stopped exactly when
their spend reached the budget, with one control event each."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import TestEnv
from pipeline import (Expected, Sender, balances, campaign_states, clickhouse_ids, clickhouse_stats, control_stops,
                      hdfs_ids, nonzero)

# A traceback is expected only from these loggers, for the reason given (none since eventd moved
# from kafka-python, which logged one of its own whenever a broker connection broke).
EXPECTED_TRACEBACKS: dict[str, str] = {}
_HEADER = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) \[(?P<role>[^:\]]+):\d+\] (?P<logger>\S+): ")


@dataclass
class Findings:
    """The numbers of one scenario's row and the invariants it broke (empty: all held)."""
    acked: int = 0
    clickhouse: int = 0
    hdfs: int = 0
    balances: str = ""
    lost: int = 0           # acknowledged events missing from ClickHouse or HDFS
    duplicated: int = 0     # events more than once in ClickHouse or HDFS
    violations: list[str] = field(default_factory=list)


def wait_delivered(env: TestEnv, sender: Sender, timeout: float, since: float) -> float | None:
    """Seconds from ``since`` (monotonic) until every acknowledged event is in ClickHouse and HDFS
    and its cost in MariaDB; None if that did not happen within ``timeout`` from now (the check
    then reports what is missing)."""
    acked = {e["id"] for e in sender.accepted}
    spent = sum(Expected(sender.accepted).spent.values())
    t0 = time.monotonic()
    steps = (lambda: acked <= set(clickhouse_ids(env.db)),
             lambda: sum(balances(env.db)[0].values()) >= spent,
             lambda: acked <= set(hdfs_ids(env.hdfs_base)))
    for step in steps:
        while not step():
            if time.monotonic() - t0 > timeout:
                return None
            time.sleep(1)
    return time.monotonic() - since


def check(env: TestEnv, sender: Sender, budgets: dict[int, int]) -> Findings:
    """Compare every sink with what was acknowledged and offered; see the module docstring."""
    found = Findings(acked=len(sender.accepted))
    acked = {e["id"] for e in sender.accepted}
    in_ch, in_hdfs = clickhouse_ids(env.db), hdfs_ids(env.hdfs_base)
    found.clickhouse, found.hdfs = sum(in_ch.values()), sum(in_hdfs.values())
    found.lost = len(acked - (set(in_ch) & set(in_hdfs)))          # missing from either sink
    found.duplicated = len({i for i, n in in_ch.items() if n > 1} | {i for i, n in in_hdfs.items() if n > 1})
    v = found.violations
    _ids(v, "ClickHouse", in_ch, acked, sender.offered)
    _ids(v, "HDFS", in_hdfs, acked, sender.offered)
    if set(in_ch) != set(in_hdfs):
        v.append(f"ClickHouse and HDFS hold different events: {len(set(in_ch) - set(in_hdfs))} only in "
                 f"ClickHouse, {len(set(in_hdfs) - set(in_ch))} only in HDFS")
    delivered = [sender.offered[i] for i in in_ch if i in sender.offered]
    want = Expected(delivered)
    stats, cost = clickhouse_stats(env.db)
    if stats != want.stats or cost != want.cost:
        v.append(f"ClickHouse statistics differ from the delivered events: counts {_diff(stats, want.stats)}, "
                 f"cost {_diff(cost, want.cost)}")
    spent, bal = balances(env.db)
    off = _diff(spent, want.spent) or _diff(bal, want.balance)
    found.balances = "exact" if not off else "off"
    if off:
        v.append(f"MariaDB balances differ from the delivered events' sums (micro-units): {off}")
    v += _budgets(env, budgets)
    return found


def _ids(v: list[str], sink: str, seen: Counter[str], acked: set[str], offered: dict[str, Any]) -> None:
    if missing := acked - set(seen):
        v.append(f"{sink}: {len(missing)} acknowledged events missing, e.g. {sorted(missing)[:3]}")
    if twice := {i: n for i, n in seen.items() if n > 1}:
        v.append(f"{sink}: {len(twice)} events more than once, e.g. {sorted(twice.items())[:3]}")
    if unknown := set(seen) - set(offered):
        v.append(f"{sink}: {len(unknown)} events that were never offered, e.g. {sorted(unknown)[:3]}")


def _diff(got: Counter, want: Counter) -> dict:
    """Keys whose values differ, as key → (got, want); zero counts are ignored."""
    g, w = nonzero(got), nonzero(want)
    return {k: (g.get(k), w.get(k)) for k in set(g) | set(w) if g.get(k) != w.get(k)}


def _budgets(env: TestEnv, budgets: dict[int, int]) -> list[str]:
    """Stopped exactly when spend reached the budget, overspend = spend beyond it, one control event."""
    out: list[str] = []
    states, stops = campaign_states(env.db), control_stops(env)
    for campaign, budget in budgets.items():
        status, spent, overspend, _ = states[campaign]
        reached = spent >= budget
        if (status == "stopped") != reached:
            out.append(f"campaign {campaign}: status {status} with spent {spent} and budget {budget}")
        if reached and overspend != spent - budget:
            out.append(f"campaign {campaign}: overspend {overspend}, spent − budget is {spent - budget}")
        if stops.get(campaign, 0) != (1 if reached else 0):
            out.append(f"campaign {campaign}: {stops.get(campaign, 0)} campaign_stopped events, "
                       f"expected {1 if reached else 0}")
    return out


def unexpected_tracebacks(log: Path) -> list[str]:
    """The log records that carry a traceback not listed in :data:`EXPECTED_TRACEBACKS`."""
    out: list[str] = []
    header = ""
    for line in log.read_text(errors="replace").splitlines():
        if _HEADER.match(line):
            header = line
        elif line.startswith("Traceback (most recent call last)"):
            # logging writes a record's traceback (and any chained one) after its first line; the
            # roles' lines interleave only between records, so the last record line is its owner.
            m = _HEADER.match(header)
            if not (m and m["logger"].startswith(tuple(EXPECTED_TRACEBACKS))):
                out.append(header[:300] or "(a traceback before any log record)")
    return out
