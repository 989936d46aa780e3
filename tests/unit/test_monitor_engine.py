"""The monitor across restarts and backlogs, on a fake clock: an incident open before a restart is
not announced again and still gets its resolved message; an alert Kafka never acknowledged is sent
again with the same id (at-least-once); incidents that happened while the monitor was down are
found when it catches up, without false alarms from re-reading; replayed legacy events are ignored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eventd.roles.monitor.state import load_state
from eventd.roles.monitor.testdata import Anomaly, HostStops, Simulation, Traffic, monitor_config

T0 = 1_700_000_000_000
MIN = 60_000
RULES = """
settle: 5s
idle_after: 30s
max_catch_up: 30m
rules:
  - {name: traffic-host, kind: traffic, by: host, step: 10s, window: 1m, baseline: 10m, resolve_after: 1m}
  - {name: clock-host, kind: clock, by: host, step: 10s, window: 1m, past: 10m, future: 1m, resolve_after: 1m}
"""


def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return monitor_config(RULES, str(tmp_path / "state.json"))


def restart(tmp_path: Path, at_ms: int, traffic: Traffic) -> Simulation:
    """A new monitor process at wall time ``at_ms`` that re-reads its history as a backlog."""
    sim = Simulation.start(config(tmp_path), at_ms, state=load_state(str(tmp_path / "state.json")))
    sim.feed(traffic, from_ms=sim.monitor.data_start, until_ms=at_ms, live=False)
    return sim


def test_an_open_incident_survives_a_restart_without_a_second_alert(tmp_path: Path) -> None:
    traffic = Traffic(T0, 30 * 60, seed=21, impressions_per_s=20,
                      anomalies=(HostStops(T0 + 14 * MIN, T0 + 22 * MIN, host="web-1"),))
    first = Simulation.start(config(tmp_path), T0)
    first.feed(traffic, until_ms=T0 + 18 * MIN)
    first.monitor.close(1.0)                       # SIGTERM: delivered, state saved
    assert [m["key"] for m in first.alerts()] == ["web-1"] and not first.alerts("resolved")

    second = restart(tmp_path, T0 + 18 * MIN, traffic)
    second.feed(traffic, from_ms=T0 + 18 * MIN)
    assert second.alerts() == [], "the open incident was announced again after the restart"
    [resolved] = second.alerts("resolved")
    assert resolved["incident"] == first.alerts()[0]["incident"]
    assert resolved["at"] >= T0 + 22 * MIN


def test_an_unacknowledged_alert_is_sent_again_with_the_same_id(tmp_path: Path) -> None:
    traffic = Traffic(T0, 24 * 60, seed=22, impressions_per_s=20,
                      anomalies=(HostStops(T0 + 14 * MIN, T0 + 30 * MIN, host="web-3"),))
    first = Simulation.start(config(tmp_path), T0)
    first.feed(traffic, until_ms=T0 + 14 * MIN)
    first.monitor.close(1.0)
    first.output.hold = True                       # Kafka stops acknowledging
    first.feed(traffic, from_ms=T0 + 14 * MIN, until_ms=T0 + 17 * MIN)
    [lost] = first.alerts()
    # kill -9 here: nothing after the last acknowledged state was saved

    second = restart(tmp_path, T0 + 17 * MIN, traffic)
    second.feed(traffic, from_ms=T0 + 17 * MIN, until_ms=T0 + 18 * MIN)
    [again] = second.alerts()
    assert again["incident"] == lost["incident"] and again["key"] == "web-3"


def test_incidents_while_the_monitor_was_down_are_found_on_catch_up(tmp_path: Path) -> None:
    traffic = Traffic(T0, 40 * 60, seed=23, impressions_per_s=20,
                      anomalies=(HostStops(T0 + 22 * MIN, T0 + 25 * MIN, host="web-2"),))
    first = Simulation.start(config(tmp_path), T0)
    first.feed(traffic, until_ms=T0 + 20 * MIN)
    first.monitor.close(1.0)
    # down from minute 20 to 30; the backlog (with the outage of web-2 in it) waits in Kafka
    second = restart(tmp_path, T0 + 30 * MIN, traffic)
    for _ in range(200):                           # ticks while the backlog is drained and judged
        second.monitor.tick(caught_up=["p0"])
    second.feed(traffic, from_ms=T0 + 30 * MIN)
    assert [(m["kind"], m["key"]) for m in second.output.messages] == [("alert", "web-2"), ("resolved", "web-2")]
    alert, resolved = second.output.messages
    assert T0 + 22 * MIN < alert["at"] <= T0 + 23 * MIN + 10_000     # judged at the data time it happened
    assert resolved["at"] < T0 + 30 * MIN


@dataclass(frozen=True)
class Replay(Anomaly):
    """``eventd replay`` of last year's files through the collector of web-1: 50 old events a second."""

    def apply(self, t_ms, events, gen):  # type: ignore[no-untyped-def]
        old = [{**gen.impression("web-1", t_ms + i), "input": "replay", "time": T0 - 365 * 86400_000}
               for i in range(50)]
        return events + old


def test_replayed_legacy_events_are_not_judged(tmp_path: Path) -> None:
    traffic = Traffic(T0, 16 * 60, seed=24, impressions_per_s=20, anomalies=(Replay(T0 + 12 * MIN, T0 + 16 * MIN),))
    sim = Simulation.start(config(tmp_path), T0)
    sim.feed(traffic)
    assert sim.output.messages == []
    assert sim.monitor.judged["clock-host"] >= T0 + 15 * MIN
    # the same stream without ignore_inputs: the replay is a spike of web-1 with times a year old
    counted = Simulation.start(monitor_config(RULES + "ignore_inputs: []\n", str(tmp_path / "s2.json")), T0)
    counted.feed(traffic)
    assert {(m["rule"], m["key"]) for m in counted.alerts()} == {("traffic-host", "web-1"), ("clock-host", "web-1")}


def test_state_file_records_judged_steps_and_recent_alerts(tmp_path: Path) -> None:
    traffic = Traffic(T0, 17 * 60, seed=25, impressions_per_s=20,
                      anomalies=(HostStops(T0 + 14 * MIN, T0 + 30 * MIN, host="web-4"),))
    sim = Simulation.start(config(tmp_path), T0)
    sim.feed(traffic)
    sim.monitor.close(1.0)
    state = load_state(str(tmp_path / "state.json"))
    assert set(state.evaluated) == {"traffic-host", "clock-host"}
    assert state.evaluated["traffic-host"] >= T0 + 16 * MIN
    assert [i.key for i in state.incidents] == ["web-4"]
    assert [a["key"] for a in state.recent] == ["web-4"]
