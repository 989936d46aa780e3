"""The rule kinds: each counts what it needs in sliding windows and, at every step, says which keys
are anomalous now (:class:`Evaluation`). Whether that opens or resolves an incident is decided by
incidents.py; a rule only judges one window.

- :class:`TrafficRule` — events per key (host, site, campaign, …) against the key's own mean over
  the preceding baseline: a drop (a server that stopped sending, a broken ad tag) or a spike.
- :class:`CtrRule` — clicks / impressions per site or zone against its own baseline CTR, with a
  binomial significance test, plus an absolute ceiling.
- :class:`FloodRule` — clicks or conversions from one IP or user agent: an absolute count per
  window and/or a share of all of them.
- :class:`ClockRule` — events whose ``time`` is far in the past or future of ``received``.

Ratio tests alone fire on noise in small counts, significance tests alone fire on tiny but
"significant" changes in huge counts; the traffic and CTR rules require both. While an incident is
open, and until its anomalous period has left the baseline window, the rule judges the key against
the baseline frozen when the incident opened (carried in its details): otherwise a long outage
would slowly become its own baseline and "resolve" itself, and the minutes after a spike would look
like a drop.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

from eventd.config.monitor import (ClockRuleConfig, CtrRuleConfig, FloodRuleConfig, RuleConfig,
                                   TrafficRuleConfig)
from eventd.config.units import format_duration
from eventd.metrics import MONITOR_DROPPED
from eventd.roles.monitor.observation import Observation
from eventd.roles.monitor.windows import BucketCounts

Details = Mapping[str, Any]


@dataclass(frozen=True)
class Finding:
    """One anomalous key: a one-line summary for people, details for machines."""

    summary: str
    details: dict[str, Any]


@dataclass
class Evaluation:
    """The verdict of one step. Keys absent from both fields are normal."""

    firing: dict[str, Finding] = field(default_factory=dict)
    undecided: set[str] = field(default_factory=set)   # open incidents the rule could not judge now


class Rule(ABC):
    """Common plumbing: event-type filter, step and span in ms, the key of an observation."""

    def __init__(self, cfg: RuleConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.step_ms = _ms(cfg.step)
        self.span_ms = _ms(cfg.span)
        self._types = frozenset(cfg.event_types)
        self._w = _ms(cfg.window) // self.step_ms

    def observe(self, obs: Observation, t_ms: int) -> None:
        """Count ``obs`` at data time ``t_ms`` if the rule reads its type and it has the key."""
        if self._types and obs.type not in self._types:
            return
        value = obs.key(self.cfg.by)
        if value is not None:
            self._count(obs, str(value), t_ms)

    def _counted(self, why: str | None) -> None:
        if why is not None:
            MONITOR_DROPPED.labels(self.name, why).inc()

    @abstractmethod
    def _count(self, obs: Observation, key: str, t_ms: int) -> None:
        """Add one event of ``key``."""

    @abstractmethod
    def advance(self, boundary_ms: int) -> None:
        """Position the windows for the step ending at ``boundary_ms``."""

    @abstractmethod
    def evaluate(self, open_keys: Collection[str], frozen: Mapping[str, Details]) -> Evaluation:
        """Judge the window the last :meth:`advance` positioned. ``open_keys``: keys with an open
        incident; ``frozen``: details of the incidents whose baseline still applies (incidents.py)."""

    @abstractmethod
    def tracked_keys(self) -> int:
        """Keys held in the windows (for the metrics)."""

    def _label(self, key: str) -> str:
        return key if self.cfg.by == "all" else f"{self.cfg.by}={key}"

    def _window_text(self) -> str:
        return format_duration(self.cfg.window)


class CountingRule(Rule):
    """A rule that counts events per key in time buckets (``self.counts``, made by the subclass)."""

    counts: BucketCounts

    def _count(self, obs: Observation, key: str, t_ms: int) -> None:
        self._counted(self.counts.add(t_ms, key))

    def advance(self, boundary_ms: int) -> None:
        self.counts.advance(boundary_ms)

    def tracked_keys(self) -> int:
        return self.counts.keys()


class TrafficRule(CountingRule):
    cfg: TrafficRuleConfig

    def __init__(self, cfg: TrafficRuleConfig, max_keys: int) -> None:
        super().__init__(cfg)
        b = _ms(cfg.baseline) // self.step_ms
        self.counts = BucketCounts(self.step_ms, {"now": (-self._w, 0), "base": (-self._w - b, -self._w)}, max_keys)
        self._scale = self._w / b      # baseline sum -> expected count in one window
        self._what = "/".join(cfg.event_types) + " events" if cfg.event_types else "events"

    def evaluate(self, open_keys: Collection[str], frozen: Mapping[str, Details]) -> Evaluation:
        now, base = self.counts.sum("now"), self.counts.sum("base")
        out = Evaluation()
        for key in set(base) | set(open_keys) | set(frozen):
            expected = frozen[key]["expected"] if key in frozen else base[key] * self._scale
            if expected < self.cfg.min_expected:
                if key in open_keys:
                    out.undecided.add(key)
                continue
            finding = self._judge(key, now.get(key, 0), expected)
            if finding:
                out.firing[key] = finding
        return out

    def _judge(self, key: str, n: int, expected: float) -> Finding | None:
        c = self.cfg
        z = (n - expected) / math.sqrt(expected)
        if c.drop_below and n < c.drop_below * expected and z <= -c.min_z:
            direction = "drop"
        elif c.spike_above and n > c.spike_above * expected and z >= c.min_z:
            direction = "spike"
        else:
            return None
        change = (n - expected) / expected * 100
        summary = (f"traffic {direction}: {self._label(key)}: {n} {self._what} in the last "
                   f"{self._window_text()}, expected {expected:.0f} ({change:+.0f}%)")
        return Finding(summary, {"direction": direction, "by": c.by, "key": key, "count": n,
                                 "expected": round(expected, 3), "z": round(z, 2)})


class CtrRule(Rule):
    cfg: CtrRuleConfig

    def __init__(self, cfg: CtrRuleConfig, max_keys: int) -> None:
        super().__init__(cfg)
        b = _ms(cfg.baseline) // self.step_ms
        ranges = {"now": (-self._w, 0), "base": (-self._w - b, -self._w)}
        self.impressions = BucketCounts(self.step_ms, ranges, max_keys)
        self.clicks = BucketCounts(self.step_ms, ranges, max_keys)

    def _count(self, obs: Observation, key: str, t_ms: int) -> None:
        counts = self.impressions if obs.type == self.cfg.impression_type else self.clicks
        self._counted(counts.add(t_ms, key))

    def advance(self, boundary_ms: int) -> None:
        self.impressions.advance(boundary_ms)
        self.clicks.advance(boundary_ms)

    def tracked_keys(self) -> int:
        return self.impressions.keys()

    def evaluate(self, open_keys: Collection[str], frozen: Mapping[str, Details]) -> Evaluation:
        imps, clicks = self.impressions.sum("now"), self.clicks.sum("now")
        out = Evaluation()
        for key in set(imps) | set(open_keys):
            n = imps.get(key, 0)
            if n < self.cfg.min_impressions:
                if key in open_keys:
                    out.undecided.add(key)
                continue
            p0 = frozen[key]["baseline_ctr"] if key in frozen else self._baseline_ctr(key)
            finding = self._judge(key, n, clicks.get(key, 0), p0)
            if finding:
                out.firing[key] = finding
        return out

    def _baseline_ctr(self, key: str) -> float | None:
        n, c = self.impressions.sum("base").get(key, 0), self.clicks.sum("base").get(key, 0)
        if n < self.cfg.min_impressions or c < self.cfg.min_baseline_clicks:
            return None                    # too little history: only max_ctr applies
        return c / n

    def _judge(self, key: str, n: int, c: int, p0: float | None) -> Finding | None:
        cfg, ctr = self.cfg, c / n
        direction = None
        if cfg.max_ctr and ctr > cfg.max_ctr:
            direction = "above max_ctr"
        elif p0 is not None:
            p = min(max(p0, 1e-6), 1 - 1e-6)
            z = (c - n * p) / math.sqrt(n * p * (1 - p))
            if cfg.spike_above and ctr > cfg.spike_above * p0 and z >= cfg.min_z:
                direction = "high"
            elif cfg.drop_below and ctr < cfg.drop_below * p0 and z <= -cfg.min_z:
                direction = "low"
        if direction is None:
            return None
        base = f"baseline {p0:.2%}" if p0 is not None else "no baseline"
        summary = (f"CTR {direction}: {self._label(key)}: {ctr:.2%} ({c} clicks / {n} impressions) in the last "
                   f"{self._window_text()}, {base}")
        return Finding(summary, {"direction": direction, "by": cfg.by, "key": key, "clicks": c,
                                 "impressions": n, "ctr": round(ctr, 6),
                                 "baseline_ctr": None if p0 is None else round(p0, 6)})


class FloodRule(CountingRule):
    cfg: FloodRuleConfig

    def __init__(self, cfg: FloodRuleConfig, max_keys: int) -> None:
        super().__init__(cfg)
        self.counts = BucketCounts(self.step_ms, {"now": (-self._w, 0)}, max_keys)
        self._what = "/".join(cfg.event_types) or "events"

    def evaluate(self, open_keys: Collection[str], frozen: Mapping[str, Details]) -> Evaluation:
        c, total = self.cfg, self.counts.total("now")
        share_on = bool(c.max_share) and total >= c.min_total
        out = Evaluation()
        for key, n in self.counts.sum("now").items():
            if (c.max_events and n > c.max_events) or (share_on and n > c.max_share * total):
                summary = (f"{self._what} flood: {self._label(key)}: {n} {self._what} events in the last "
                           f"{self._window_text()} ({n / total:.0%} of {total})")
                out.firing[key] = Finding(summary, {"by": c.by, "key": key, "count": n, "total": total})
        return out


class ClockRule(Rule):
    cfg: ClockRuleConfig

    def __init__(self, cfg: ClockRuleConfig, max_keys: int) -> None:
        super().__init__(cfg)
        ranges = {"now": (-self._w, 0)}
        self.total = BucketCounts(self.step_ms, ranges, max_keys)
        self.past = BucketCounts(self.step_ms, ranges, max_keys)
        self.future = BucketCounts(self.step_ms, ranges, max_keys)
        self._past_ms, self._future_ms = _ms(cfg.past), _ms(cfg.future)

    def _count(self, obs: Observation, key: str, t_ms: int) -> None:
        self._counted(self.total.add(t_ms, key))
        skew = obs.time - obs.received
        if skew < -self._past_ms:
            self.past.add(t_ms, key)
        elif skew > self._future_ms:
            self.future.add(t_ms, key)

    def advance(self, boundary_ms: int) -> None:
        for counts in (self.total, self.past, self.future):
            counts.advance(boundary_ms)

    def tracked_keys(self) -> int:
        return self.total.keys()

    def evaluate(self, open_keys: Collection[str], frozen: Mapping[str, Details]) -> Evaluation:
        totals, past, future = self.total.sum("now"), self.past.sum("now"), self.future.sum("now")
        out = Evaluation()
        for key in set(past) | set(future):
            bad, n = past.get(key, 0) + future.get(key, 0), totals.get(key, 0)
            if bad >= self.cfg.min_events and n and bad / n >= self.cfg.min_share:
                out.firing[key] = self._finding(key, past.get(key, 0), future.get(key, 0), n)
        return out

    def _finding(self, key: str, past: int, future: int, n: int) -> Finding:
        parts = [f"{past} more than {format_duration(self.cfg.past)} in the past"] if past else []
        parts += [f"{future} more than {format_duration(self.cfg.future)} in the future"] if future else []
        summary = (f"event clock: {self._label(key)}: {past + future} of {n} events in the last "
                   f"{self._window_text()} have times far from their arrival ({', '.join(parts)})")
        return Finding(summary, {"by": self.cfg.by, "key": key, "past": past, "future": future, "total": n})


def build_rule(cfg: RuleConfig, max_keys: int) -> Rule:
    """The rule object for one configured rule."""
    kinds: dict[type, type[Rule]] = {TrafficRuleConfig: TrafficRule, CtrRuleConfig: CtrRule,
                                     FloodRuleConfig: FloodRule, ClockRuleConfig: ClockRule}
    return kinds[type(cfg)](cfg, max_keys)  # type: ignore[call-arg]


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


__all__ = ["Rule", "TrafficRule", "CtrRule", "FloodRule", "ClockRule", "Finding", "Evaluation", "build_rule"]
