"""Each rule kind on generated traffic with planted anomalies: every anomaly alerts once, on the
right rule and key, and is resolved after it ends; clean traffic raises nothing. The monitor runs
on a fake clock, fed second by second (eventd/roles/monitor/testdata.py)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from eventd.roles.monitor.testdata import (ClockSkew, CtrShift, Flood, HostStops, SiteSpike, Simulation, Traffic,
                                           monitor_config)

T0 = 1_700_000_000_000
MIN = 60_000

TRAFFIC_RULES = """
rules:
  - {name: traffic-host, kind: traffic, by: host, step: 10s, window: 1m, baseline: 10m, resolve_after: 2m}
  - {name: traffic-site, kind: traffic, by: site_id, event_types: [impression], step: 10s, window: 1m,
     baseline: 10m, resolve_after: 2m}
"""
CTR_RULES = """
rules:
  - {name: ctr-zone, kind: ctr, by: zone_id, step: 10s, window: 3m, baseline: 15m, min_impressions: 300,
     resolve_after: 2m}
  - {name: ctr-site, kind: ctr, by: site_id, step: 10s, window: 3m, baseline: 15m, min_impressions: 300,
     resolve_after: 2m}
"""
FLOOD_RULES = """
rules:
  - {name: click-flood-ip, kind: flood, by: ip, event_types: [click], step: 10s, window: 1m, max_events: 30,
     resolve_after: 2m}
  - {name: conversion-flood-ip, kind: flood, by: ip, event_types: [conversion], step: 10s, window: 1m,
     max_events: 10, resolve_after: 2m}
  - {name: click-flood-ua, kind: flood, by: user_agent, event_types: [click], step: 10s, window: 1m,
     max_share: 0.6, min_total: 50, resolve_after: 2m}
"""
CLOCK_RULES = """
rules:
  - {name: clock-host, kind: clock, by: host, step: 10s, window: 1m, past: 10m, future: 1m, resolve_after: 2m}
"""


def simulate(tmp_path: Path, rules: str, traffic: Traffic) -> Simulation:
    sim = Simulation.start(monitor_config(rules, str(tmp_path / "state.json")), traffic.start_ms)
    sim.feed(traffic)
    return sim


def incidents(sim: Simulation) -> dict[str, set[str]]:
    """Rule → keys alerted; also checks that every alert was resolved exactly once, after it opened."""
    alerted: dict[str, set[str]] = defaultdict(set)
    opened = {m["incident"]: m for m in sim.alerts("alert")}
    resolved = [m["incident"] for m in sim.alerts("resolved")]
    assert sorted(resolved) == sorted(opened), "every incident must be resolved exactly once"
    for m in sim.alerts("resolved"):
        assert m["at"] > opened[m["incident"]]["at"]
    for m in opened.values():
        alerted[m["rule"]].add(m["key"])
    return dict(alerted)


def test_traffic_drops_and_spikes_per_host_and_site(tmp_path: Path) -> None:
    traffic = Traffic(T0, 32 * 60, seed=3, impressions_per_s=24, anomalies=(
        HostStops(T0 + 14 * MIN, T0 + 18 * MIN, host="web-2"),              # a server stopped sending
        SiteSpike(T0 + 20 * MIN, T0 + 23 * MIN, site_id=101, factor=6),     # a traffic spike on one site
        SiteSpike(T0 + 24 * MIN, T0 + 27 * MIN, site_id=102, factor=0.05),  # a broken ad tag
    ))
    sim = simulate(tmp_path, TRAFFIC_RULES, traffic)
    assert incidents(sim) == {"traffic-host": {"web-2"}, "traffic-site": {"101", "102"}}
    by_key = {m["key"]: m for m in sim.alerts()}
    assert by_key["web-2"]["details"]["direction"] == "drop"
    assert by_key["101"]["details"]["direction"] == "spike"
    assert by_key["102"]["details"]["direction"] == "drop"
    # found within a window (plus a step) of the start, not at some later moment
    assert T0 + 14 * MIN < by_key["web-2"]["at"] <= T0 + 15 * MIN + 10_000
    assert T0 + 20 * MIN < by_key["101"]["at"] <= T0 + 21 * MIN + 10_000


def test_ctr_anomalies_per_zone_and_site(tmp_path: Path) -> None:
    traffic = Traffic(T0, 40 * 60, seed=5, impressions_per_s=40, zones_per_site=1, anomalies=(
        CtrShift(T0 + 20 * MIN, T0 + 24 * MIN, field_name="zone_id", value=1010, ctr=0.3),   # click fraud
        CtrShift(T0 + 28 * MIN, T0 + 32 * MIN, field_name="zone_id", value=1020, ctr=0.0),   # clicks lost
    ))
    sim = simulate(tmp_path, CTR_RULES, traffic)
    assert incidents(sim) == {"ctr-zone": {"1010", "1020"}, "ctr-site": {"101", "102"}}
    directions = {(m["rule"], m["key"]): m["details"]["direction"] for m in sim.alerts()}
    assert directions[("ctr-zone", "1010")] == "high" and directions[("ctr-zone", "1020")] == "low"


def test_click_and_conversion_floods_from_one_ip_or_user_agent(tmp_path: Path) -> None:
    traffic = Traffic(T0, 20 * 60, seed=7, impressions_per_s=24, anomalies=(
        Flood(T0 + 3 * MIN, T0 + 6 * MIN, field_name="ip", value="203.0.113.9", per_s=1.0),
        Flood(T0 + 8 * MIN, T0 + 11 * MIN, field_name="ip", value="198.51.100.4", event_type="conversion",
              per_s=0.5),
        Flood(T0 + 13 * MIN, T0 + 15 * MIN, field_name="user_agent", value="evilbot/1.0", per_s=3.0),
    ))
    sim = simulate(tmp_path, FLOOD_RULES, traffic)
    assert incidents(sim) == {"click-flood-ip": {"203.0.113.9"}, "conversion-flood-ip": {"198.51.100.4"},
                              "click-flood-ua": {"evilbot/1.0"}}


def test_event_times_far_in_the_past_or_future(tmp_path: Path) -> None:
    traffic = Traffic(T0, 16 * 60, seed=9, impressions_per_s=24, anomalies=(
        ClockSkew(T0 + 3 * MIN, T0 + 6 * MIN, host="web-3", offset_ms=-3 * 3600_000),   # time zone bug
        ClockSkew(T0 + 8 * MIN, T0 + 10 * MIN, host="web-4", offset_ms=30 * MIN),       # clock ahead
    ))
    sim = simulate(tmp_path, CLOCK_RULES, traffic)
    assert incidents(sim) == {"clock-host": {"web-3", "web-4"}}
    found = {m["key"]: m["details"] for m in sim.alerts()}
    assert found["web-3"]["past"] > 0 and found["web-3"]["future"] == 0
    assert found["web-4"]["future"] > 0 and found["web-4"]["past"] == 0


@pytest.mark.parametrize("seed", [11, 12])
def test_clean_traffic_raises_nothing(tmp_path: Path, seed: int) -> None:
    rules = TRAFFIC_RULES + "\n".join(r.split("rules:\n", 1)[1] for r in (CTR_RULES, FLOOD_RULES, CLOCK_RULES))
    traffic = Traffic(T0, 45 * 60, seed=seed, impressions_per_s=40, zones_per_site=1)
    sim = simulate(tmp_path, rules, traffic)
    assert len(sim.cfg.rules) == 8
    assert sim.output.messages == []
    assert all(sim.monitor.judged.get(r.name, 0) >= T0 + 44 * MIN for r in sim.cfg.rules), "not every rule judged"
