"""Synthetic ad traffic with planted anomalies, for the monitor's tests and demos.

:func:`generate` yields complete Avro records (impressions, clicks, conversions) second by second,
deterministic for a seed: several hosts, sites with their own CTR, zones, campaigns, a large pool
of IPs and a few user agents, Poisson-distributed counts and a little delivery latency. Each
:class:`Anomaly` rewrites the events of its time range, and says which rule kind and key should
notice it — the tests assert that exactly those alert, and nothing alerts on clean traffic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

import yaml

from eventd.config.monitor import MonitorConfig
from eventd.config.reader import Section
from eventd.roles.monitor.alerts import AlertOutputs
from eventd.roles.monitor.engine import Monitor
from eventd.roles.monitor.observation import Projector
from eventd.roles.monitor.rules import build_rule
from eventd.roles.monitor.state import MonitorState, load_state

USER_AGENTS = tuple(f"Mozilla/5.0 (agent-{i}) Chrome/12{i}.0" for i in range(8))


@dataclass(frozen=True)
class Traffic:
    """A clean stream: rates are per second over the whole stream."""

    start_ms: int
    seconds: int
    seed: int = 1
    hosts: int = 4
    sites: int = 4
    zones_per_site: int = 2
    campaigns: int = 4
    impressions_per_s: float = 40.0
    ctr: tuple[float, float] = (0.02, 0.06)      # each site's CTR is drawn from this range
    conversion_rate: float = 0.05
    ips: int = 20_000
    anomalies: tuple["Anomaly", ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Anomaly:
    """Base: active on ``[start_ms, end_ms)``; ``rule_kind`` and ``key`` say who should notice it."""

    start_ms: int
    end_ms: int

    rule_kind = ""

    def key(self) -> str:
        raise NotImplementedError

    def active(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms

    def apply(self, t_ms: int, events: list[dict[str, Any]], gen: "_Generator") -> list[dict[str, Any]]:
        raise NotImplementedError


@dataclass(frozen=True)
class HostStops(Anomaly):
    """A server stops sending."""

    host: str = ""
    rule_kind = "traffic"

    def key(self) -> str:
        return self.host

    def apply(self, t_ms, events, gen):  # type: ignore[no-untyped-def]
        return [e for e in events if e["host"] != self.host]


@dataclass(frozen=True)
class SiteSpike(Anomaly):
    """A site's impressions multiplied by ``factor`` (0 < factor < 1 is a drop: a broken ad tag)."""

    site_id: int = 0
    factor: float = 5.0
    rule_kind = "traffic"

    def key(self) -> str:
        return str(self.site_id)

    def apply(self, t_ms, events, gen):  # type: ignore[no-untyped-def]
        out = []
        for e in events:
            if e["type"] != "impression" or e["site_id"] != self.site_id:
                out.append(e)
                continue
            copies = gen.poisson(self.factor)
            out += [e] + [gen.copy(e) for _ in range(copies - 1)] if copies else []
        return out


@dataclass(frozen=True)
class CtrShift(Anomaly):
    """The clicks of one zone (or site) at ``ctr`` instead of its usual rate."""

    field_name: str = "zone_id"
    value: int = 0
    ctr: float = 0.3
    rule_kind = "ctr"

    def key(self) -> str:
        return str(self.value)

    def apply(self, t_ms, events, gen):  # type: ignore[no-untyped-def]
        out = [e for e in events if not (e["type"] == "click" and e[self.field_name] == self.value)]
        for e in events:
            if e["type"] == "impression" and e[self.field_name] == self.value and gen.rng.random() < self.ctr:
                out.append(gen.click(e))
        return out


@dataclass(frozen=True)
class Flood(Anomaly):
    """``per_s`` extra events of ``event_type`` from one IP or user agent."""

    field_name: str = "ip"
    value: str = ""
    event_type: str = "click"
    per_s: float = 10.0
    rule_kind = "flood"

    def key(self) -> str:
        return self.value

    def apply(self, t_ms, events, gen):  # type: ignore[no-untyped-def]
        impressions = [e for e in events if e["type"] == "impression"]
        extra = []
        for _ in range(gen.poisson(self.per_s) if impressions else 0):
            click = gen.click(gen.rng.choice(impressions))
            event = click if self.event_type == "click" else gen.conversion(click)
            event[self.field_name] = self.value
            extra.append(event)
        return events + extra


@dataclass(frozen=True)
class ClockSkew(Anomaly):
    """A host's event times off by ``offset_ms`` (a wrong time zone, a dead RTC battery)."""

    host: str = ""
    offset_ms: int = -3 * 3600_000
    rule_kind = "clock"

    def key(self) -> str:
        return self.host

    def apply(self, t_ms, events, gen):  # type: ignore[no-untyped-def]
        for e in events:
            if e["host"] == self.host:
                e["time"] += self.offset_ms
        return events


def generate(traffic: Traffic) -> Iterator[list[dict[str, Any]]]:
    """One list of records per second, ordered by ``received`` within it."""
    gen = _Generator(traffic)
    for s in range(traffic.seconds):
        t_ms = traffic.start_ms + s * 1000
        events = gen.second(t_ms)
        for anomaly in traffic.anomalies:
            if anomaly.active(t_ms):
                events = anomaly.apply(t_ms, events, gen)
        events.sort(key=lambda e: e["received"])
        yield events


class _Generator:
    def __init__(self, t: Traffic) -> None:
        self.t, self.rng = t, random.Random(t.seed)
        self.site_ctr = {site: self.rng.uniform(*t.ctr) for site in self.site_ids()}
        self._n = 0

    def site_ids(self) -> list[int]:
        return [100 + i for i in range(self.t.sites)]

    def poisson(self, lam: float) -> int:
        """Knuth's method, in chunks so a large mean does not underflow."""
        n = 0
        while lam > 0:
            chunk = min(lam, 30.0)
            lam -= chunk
            limit, k, p = math.exp(-chunk), 0, 1.0
            while True:
                p *= self.rng.random()
                if p <= limit:
                    break
                k += 1
            n += k
        return n

    def _id(self) -> str:
        self._n += 1
        return f"ev-{self.t.seed}-{self._n}"

    def second(self, t_ms: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        per_host = self.t.impressions_per_s / self.t.hosts
        for h in range(self.t.hosts):
            for _ in range(self.poisson(per_host)):
                imp = self.impression(f"web-{h + 1}", t_ms + self.rng.randrange(1000))
                out.append(imp)
                if self.rng.random() < self.site_ctr[imp["site_id"]]:
                    click = self.click(imp)
                    out.append(click)
                    if self.rng.random() < self.t.conversion_rate:
                        out.append(self.conversion(click))
        return out

    def impression(self, host: str, received: int) -> dict[str, Any]:
        site = self.rng.choice(self.site_ids())
        campaign = 1 + self.rng.randrange(self.t.campaigns)
        ip = self.rng.randrange(self.t.ips)
        return {"id": self._id(), "type": "impression", "time": received - self.rng.randrange(2000),
                "received": received, "host": host, "input": "http", "schema_version": 1,
                "campaign_id": campaign, "advertiser_id": 1000 + campaign, "publisher_id": 500 + site % 3,
                "site_id": site, "zone_id": site * 10 + self.rng.randrange(self.t.zones_per_site),
                "country": self.rng.choice(("US", "DE", "FR", "GB")), "device": self.rng.choice(("mobile", "desktop")),
                "ip": f"10.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}",
                "user_agent": self.rng.choices(USER_AGENTS, weights=(30, 20, 15, 10, 10, 7, 5, 3))[0],
                "cost": 1000, "revenue": 1500, "extra": {}}

    def copy(self, e: dict[str, Any]) -> dict[str, Any]:
        return {**e, "id": self._id(), "ip": f"10.9.{self.rng.randrange(256)}.{self.rng.randrange(256)}"}

    def click(self, imp: dict[str, Any]) -> dict[str, Any]:
        c = {**imp, "id": self._id(), "type": "click", "impression_id": imp["id"], "cost": 50_000, "revenue": 80_000}
        c["extra"] = {}
        return c

    def conversion(self, click: dict[str, Any]) -> dict[str, Any]:
        conv = {k: v for k, v in click.items() if k != "impression_id"}
        conv.update({"id": self._id(), "type": "conversion", "click_id": click["id"], "goal": "purchase",
                     "value": 10_000_000, "extra": {}})
        return conv


class MemoryOutput:
    """An alert output that keeps the messages (acknowledged at once unless ``hold`` is set)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.hold = False
        self._unacked = 0

    def send(self, payload: bytes, key: bytes, now: float) -> None:
        self.messages.append(json.loads(payload))
        self._unacked += 1

    def poll(self, now: float) -> None:
        if not self.hold:
            self._unacked = 0

    def pending(self) -> int:
        return self._unacked

    def flush(self, timeout: float) -> None:
        self.poll(0.0)


class FakeClock:
    """Wall time in seconds that only moves when told."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def monitor_config(yaml_text: str, state_file: str) -> MonitorConfig:
    """A ``monitor:`` section from YAML text (the keys of the section, not the ``monitor:`` line)."""
    node = yaml.compose(yaml_text) or yaml.compose("{}")
    section = Section("<test>", "monitor", node, 1)
    cfg = MonitorConfig.read(section, os.path.dirname(state_file))
    section.finish()
    return dataclasses.replace(cfg, state_file=state_file)


@dataclass
class Simulation:
    """A monitor fed second by second from generated traffic, on a fake clock."""

    cfg: MonitorConfig
    clock: FakeClock
    output: MemoryOutput
    monitor: Monitor

    @classmethod
    def start(cls, cfg: MonitorConfig, start_ms: int, state: MonitorState | None = None) -> "Simulation":
        clock, output = FakeClock(start_ms / 1000), MemoryOutput()
        outputs = AlertOutputs(output, None, "test", cfg.recent_alerts, clock)
        monitor = Monitor(cfg, [build_rule(r, cfg.max_keys) for r in cfg.rules], outputs,
                          state if state is not None else load_state(cfg.state_file), clock)
        monitor.reading_from(monitor.history_start() if state is not None else start_ms)
        monitor.assigned(["p0"])
        return cls(cfg, clock, output, monitor)

    def feed(self, traffic: Traffic, from_ms: int | None = None, until_ms: int | None = None,
             live: bool = True) -> None:
        """Play the seconds of ``traffic`` in ``[from_ms, until_ms)``. ``live``: each second's events
        arrive as it ends and the monitor ticks caught up; otherwise they are a backlog read at the
        clock's current time, the partition lagging (a restart re-reading history)."""
        projector = Projector(r.by for r in self.cfg.rules)
        for s, events in enumerate(generate(traffic)):
            t_ms = traffic.start_ms + s * 1000
            if (from_ms is not None and t_ms < from_ms) or (until_ms is not None and t_ms >= until_ms):
                continue
            if live:
                self.clock.t = (t_ms + 1000) / 1000
            for e in events:
                self.monitor.observe("p0", projector.project(e))
            self.monitor.tick(caught_up=["p0"] if live else [])

    def alerts(self, kind: str = "alert") -> list[dict[str, Any]]:
        return [m for m in self.output.messages if m["kind"] == kind]
