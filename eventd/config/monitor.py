"""The ``monitor:`` section: the monitor role's windows, alert outputs and rules (docs/roles/monitor.md).

Rules are a list; each has a ``kind`` (``traffic``, ``ctr``, ``flood``, ``clock``) that decides its
other keys. Without a ``rules`` key the monitor runs :data:`DEFAULT_RULES` (the list shown in
``conf/eventd.yaml``); an empty list is refused — a monitor with nothing to watch is a mistake.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from eventd.config.common import RoleCommon, resolve_path
from eventd.config.reader import Section
from eventd.config.units import (choice, duration, integer, list_of, nonempty_string, ratio, string)

RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SEVERITIES = ("info", "warning", "critical")
ALL = "all"            # ``by: all``: the whole stream is one key
MAX_BUCKETS = 2000     # buckets one rule keeps (window + baseline) / step: bounds memory and CPU

# The rules a monitor runs when the section has no ``rules`` key; conf/eventd.yaml shows the same list
# (a unit test checks they agree).
DEFAULT_RULES = """
- {name: traffic-host, kind: traffic, by: host}
- {name: traffic-site, kind: traffic, by: site_id, event_types: [impression]}
- {name: traffic-campaign, kind: traffic, by: campaign_id, event_types: [impression]}
- {name: ctr-site, kind: ctr, by: site_id}
- {name: ctr-zone, kind: ctr, by: zone_id}
- {name: click-flood-ip, kind: flood, by: ip, event_types: [click], max_events: 100}
- {name: conversion-flood-ip, kind: flood, by: ip, event_types: [conversion], max_events: 20}
- {name: click-flood-user-agent, kind: flood, by: user_agent, event_types: [click], max_share: 0.5, min_total: 1000}
- {name: clock-host, kind: clock, by: host}
"""


def number(lo: float, hi: float = math.inf) -> Callable[[Any], float]:
    """A plain number within ``[lo, hi]`` (ratios above 1, z-scores)."""
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"{value!r} is not a number from {lo:g} to {hi:g}")
        return float(value)
    return convert


def field_name(value: Any) -> str:
    if not isinstance(value, str) or not (value == ALL or FIELD_NAME.match(value)):
        raise ValueError(f"{value!r} is not a field name (expected an event field such as host, site_id, ip; "
                         f"or {ALL!r} for the whole stream)")
    return value


def type_name(value: Any) -> str:
    if not isinstance(value, str) or not TYPE_NAME.match(value):
        raise ValueError(f"{value!r} is not an event type name")
    return value


@dataclass(frozen=True)
class RuleConfig:
    """Keys every rule has. ``event_types`` empty = every type; times are seconds."""

    name: str
    kind: str
    by: str
    event_types: tuple[str, ...]
    step: float            # bucket size and evaluation period
    window: float          # the current window judged at each step
    resolve_after: float   # the condition must stay clear this long before a resolved message
    severity: str

    @property
    def span(self) -> float:
        """How much history one evaluation needs."""
        return self.window


@dataclass(frozen=True)
class TrafficRuleConfig(RuleConfig):
    """Event count per key in ``window`` against its own mean over the preceding ``baseline``."""

    baseline: float
    drop_below: float      # alert when count < drop_below x expected (0 = drops off)
    spike_above: float     # alert when count > spike_above x expected (0 = spikes off)
    min_expected: float    # keys expecting fewer events per window are too noisy to judge
    min_z: float           # and the difference must be this many Poisson standard deviations

    @property
    def span(self) -> float:
        return self.window + self.baseline


@dataclass(frozen=True)
class CtrRuleConfig(RuleConfig):
    """Clicks / impressions per key in ``window`` against the key's CTR over ``baseline``."""

    baseline: float
    impression_type: str
    click_type: str
    drop_below: float
    spike_above: float
    max_ctr: float         # a CTR above this is an anomaly whatever the baseline (0 = off)
    min_impressions: int   # fewer impressions in the window: not judged
    min_baseline_clicks: int  # fewer clicks in the baseline: only max_ctr applies
    min_z: float

    @property
    def span(self) -> float:
        return self.window + self.baseline


@dataclass(frozen=True)
class FloodRuleConfig(RuleConfig):
    """Events per key (one IP, one user agent) in ``window``."""

    max_events: int        # more than this many events in the window (0 = off)
    max_share: float       # or more than this share of all the rule's events (0 = off) ...
    min_total: int         # ... when the window holds at least this many events


@dataclass(frozen=True)
class ClockRuleConfig(RuleConfig):
    """Events whose ``time`` is far from ``received`` (stamped by the collector), per key."""

    past: float
    future: float
    min_events: int        # at least this many such events in the window ...
    min_share: float       # ... and at least this share of the key's events


@dataclass(frozen=True)
class WebhookConfig:
    url: str               # "" = no webhook
    timeout: float
    retry_for: float


@dataclass(frozen=True)
class MonitorConfig:
    role: RoleCommon
    group_id: str
    alert_topic: str
    state_file: str
    settle: float
    idle_after: float
    max_catch_up: float
    max_incidents: int
    max_keys: int
    recent_alerts: int
    ignore_inputs: tuple[str, ...]
    webhook: WebhookConfig
    rules: tuple[RuleConfig, ...]

    @property
    def event_types(self) -> tuple[str, ...] | None:
        """The event types the rules read; None = every type (a rule without ``event_types``)."""
        types: set[str] = set()
        for rule in self.rules:
            if not rule.event_types:
                return None
            types.update(rule.event_types)
        return tuple(sorted(types))

    @classmethod
    def read(cls, s: Section, state_dir: str) -> "MonitorConfig":
        role = RoleCommon.read(s, enabled=False)
        if role.processes != 1:
            raise s.error("processes", "must be 1: every window must see the whole stream "
                                       "(see docs/roles/monitor.md)")
        wh = s.section("webhook")
        cfg = cls(role=role, group_id=s.get("group_id", nonempty_string, "eventd-monitor"),
                  alert_topic=s.get("alert_topic", nonempty_string, "eventd.alerts"),
                  state_file=resolve_path(s, s.get("state_file", nonempty_string,
                                                   f"{state_dir}/monitor/state.json")),
                  settle=s.get("settle", duration, "10s"),
                  idle_after=s.get("idle_after", duration, "1m"),
                  max_catch_up=s.get("max_catch_up", duration, "1h"),
                  max_incidents=s.get("max_incidents", integer(1, 100_000), 20),
                  max_keys=s.get("max_keys", integer(100, 100_000_000), 1_000_000),
                  recent_alerts=s.get("recent_alerts", integer(0, 10_000), 50),
                  ignore_inputs=s.get("ignore_inputs", list_of(nonempty_string), ["replay"]),
                  webhook=_webhook(wh), rules=_rules(s))
        wh.finish()
        return cfg


def _webhook(s: Section) -> WebhookConfig:
    cfg = WebhookConfig(url=s.get("url", string, ""), timeout=s.get("timeout", duration, "5s"),
                        retry_for=s.get("retry_for", duration, "10m"))
    if cfg.url and not re.match(r"^https?://[^/\s]+", cfg.url):
        raise s.error("url", f"{cfg.url!r} is not an http:// or https:// URL")
    if not 0.1 <= cfg.timeout <= 60:
        raise s.error("timeout", "must be between 100ms and 60s: the monitor waits for it")
    return cfg


def _rules(s: Section) -> tuple[RuleConfig, ...]:
    if s.has("rules"):
        items = s.sections("rules", min_items=1)
    else:
        default = Section("<built-in default rules>", s.path, yaml.compose(f"rules: {DEFAULT_RULES}"), 1)
        items = default.sections("rules")
    rules = tuple(read_rule(item) for item in items)
    seen: set[str] = set()
    for item, rule in zip(items, rules):
        if rule.name in seen:
            raise item.error("name", f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
    return rules


def read_rule(s: Section) -> RuleConfig:
    """One rule; its ``kind`` decides which keys it takes (any other key is an error)."""
    kind = s.get("kind", choice(*_KINDS), None)
    if kind is None:
        raise s.error("kind", f"missing required value (one of: {', '.join(_KINDS)})")
    rule = _KINDS[kind](s, kind)
    s.finish()
    _check_times(s, rule)
    return rule


def _common(s: Section, kind: str, step: str, window: str, types: list[str]) -> dict[str, Any]:
    name = s.get("name", nonempty_string)
    if not RULE_NAME.match(name):
        raise s.error("name", f"{name!r} must match [a-z0-9][a-z0-9_-]{{0,63}}")
    window_s = s.get("window", duration, window)
    return {"name": name, "kind": kind, "by": s.get("by", field_name),
            "event_types": s.get("event_types", list_of(type_name), types),
            "step": s.get("step", duration, step), "window": window_s,
            "resolve_after": s.get("resolve_after", duration, "5m"),
            "severity": s.get("severity", choice(*SEVERITIES), "warning")}


def _traffic(s: Section, kind: str) -> TrafficRuleConfig:
    rule = TrafficRuleConfig(**_common(s, kind, "1m", "5m", []), baseline=s.get("baseline", duration, "1h"),
                             drop_below=s.get("drop_below", ratio, 0.3),
                             spike_above=s.get("spike_above", number(0), 3.0),
                             min_expected=s.get("min_expected", number(1), 100),
                             min_z=s.get("min_z", number(0, 100), 5))
    _check_ratios(s, rule.drop_below, rule.spike_above)
    return rule


def _ctr(s: Section, kind: str) -> CtrRuleConfig:
    if s.has("event_types"):
        raise s.error("event_types", "a ctr rule reads impression_type and click_type; it takes no event_types")
    rule = CtrRuleConfig(**_common(s, kind, "1m", "15m", []), baseline=s.get("baseline", duration, "2h"),
                         impression_type=s.get("impression_type", type_name, "impression"),
                         click_type=s.get("click_type", type_name, "click"),
                         drop_below=s.get("drop_below", ratio, 0.25),
                         spike_above=s.get("spike_above", number(0), 4.0),
                         max_ctr=s.get("max_ctr", ratio, 0.5),
                         min_impressions=s.get("min_impressions", integer(1), 1000),
                         min_baseline_clicks=s.get("min_baseline_clicks", integer(1), 20),
                         min_z=s.get("min_z", number(0, 100), 5))
    if rule.impression_type == rule.click_type:
        raise s.error("click_type", "must differ from impression_type")
    _check_ratios(s, rule.drop_below, rule.spike_above, rule.max_ctr)
    return dataclasses.replace(rule, event_types=(rule.impression_type, rule.click_type))


def _flood(s: Section, kind: str) -> FloodRuleConfig:
    rule = FloodRuleConfig(**_common(s, kind, "10s", "1m", ["click"]),
                           max_events=s.get("max_events", integer(0), 0),
                           max_share=s.get("max_share", ratio, 0.0),
                           min_total=s.get("min_total", integer(0), 1000))
    if not rule.max_events and not rule.max_share:
        raise s.error("max_events", "a flood rule needs max_events or max_share (or both)")
    return rule


def _clock(s: Section, kind: str) -> ClockRuleConfig:
    rule = ClockRuleConfig(**_common(s, kind, "1m", "5m", []), past=s.get("past", duration, "1h"),
                           future=s.get("future", duration, "5m"),
                           min_events=s.get("min_events", integer(1), 10),
                           min_share=s.get("min_share", ratio, 0.05))
    if rule.past <= 0 or rule.future <= 0:
        raise s.error("past" if rule.past <= 0 else "future", "must be longer than 0s")
    return rule


_KINDS: dict[str, Callable[[Section, str], RuleConfig]] = {
    "traffic": _traffic, "ctr": _ctr, "flood": _flood, "clock": _clock}


def _check_ratios(s: Section, drop_below: float, spike_above: float, max_ctr: float = 0.0) -> None:
    if spike_above and spike_above <= 1:
        raise s.error("spike_above", "must be above 1 (or 0 to turn spikes off)")
    if drop_below >= 1:
        raise s.error("drop_below", "must be below 1 (or 0 to turn drops off)")
    if not drop_below and not spike_above and not max_ctr:
        raise s.error("drop_below", "the rule can never fire: drop_below and spike_above are both 0")


def _check_times(s: Section, rule: RuleConfig) -> None:
    """Windows are whole numbers of steps, so buckets line up with every evaluation."""
    if rule.step < 1:
        raise s.error("step", "must be at least 1s")
    parts = [("window", rule.window)] + [(k, getattr(rule, k)) for k in ("baseline",) if hasattr(rule, k)]
    for key, value in parts:
        if value < rule.step or abs(value / rule.step - round(value / rule.step)) > 1e-9:
            raise s.error(key, f"must be a whole multiple of step ({rule.step:g}s)")
    if rule.span / rule.step > MAX_BUCKETS:
        raise s.error("step", f"too small for the window: (window + baseline) / step must be at most {MAX_BUCKETS}")
