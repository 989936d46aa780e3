"""The monitor's core, free of Kafka: observations in, alert messages out, on an injectable clock.

- :meth:`Monitor.observe` counts an event in every rule's windows at its data time: its
  ``received`` stamp, capped at the wall clock (a collector whose clock runs ahead cannot push
  buckets into the future).
- :meth:`Monitor.tick` moves each rule through every step boundary the watermark (timebase.py)
  has passed, judges it, turns verdicts into incident messages (incidents.py), publishes them
  (alerts.py), and saves the state file once Kafka has acknowledged everything (state.py).

A rule judges the step ending at ``b`` only when the monitor has read all data since
``b - span`` (the window plus its baseline), and only if ``b`` is after what the state file says
was already judged: after a restart the history is re-read to rebuild the windows, not to alert
again.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Hashable, Iterable

from eventd.config.monitor import MonitorConfig
from eventd.metrics import MONITOR_DELAY, MONITOR_EVAL_SECONDS, MONITOR_KEYS, MONITOR_OPEN
from eventd.roles.monitor.alerts import AlertOutputs, iso
from eventd.roles.monitor.incidents import IncidentBook
from eventd.roles.monitor.observation import Observation
from eventd.roles.monitor.rules import Rule
from eventd.roles.monitor.state import MonitorState, save_state
from eventd.roles.monitor.timebase import Watermark

log = logging.getLogger(__name__)
Clock = Callable[[], float]
MAX_STEPS_PER_TICK = 60       # per rule: a long catch-up is spread over ticks so polling goes on
SAVE_INTERVAL = 5.0           # seconds (real time) between state file writes: each one fsyncs


class Monitor:
    def __init__(self, cfg: MonitorConfig, rules: list[Rule], outputs: AlertOutputs, state: MonitorState,
                 clock: Clock = time.time) -> None:
        self.cfg, self.rules, self.outputs, self.clock = cfg, rules, outputs, clock
        self.book = IncidentBook(cfg.max_incidents)
        names = {r.name for r in rules}                # a rule removed from the config is forgotten
        self.book.restore([i for i in state.incidents if i.rule in names])
        outputs.recent.extend(state.recent)
        self.judged = {k: v for k, v in state.evaluated.items() if k in names}   # last step judged and delivered
        self.watermark = Watermark(_ms(cfg.settle), _ms(cfg.idle_after), self._now_ms())
        self.data_start: int | None = None
        self._last: dict[str, int] = {}               # rule -> last step boundary passed
        self._ignore = frozenset(cfg.ignore_inputs)
        self._dirty, self._saved_at = False, -SAVE_INTERVAL

    # -- input ---------------------------------------------------------------------------
    def history_start(self) -> int:
        """The data time (ms) to start reading Kafka from: the baselines of the first step to judge."""
        now = self._now_ms()
        since = min(self.judged.values(), default=now)
        since = max(since, now - _ms(self.cfg.max_catch_up))
        return since - max(r.span_ms for r in self.rules) - _ms(self.cfg.settle)

    def reading_from(self, t_ms: int) -> None:
        """All data from ``t_ms`` on is being read (the first assignment's start)."""
        if self.data_start is None:
            self.data_start = t_ms
            log.info("re-reading events received since %s to rebuild the windows", iso(t_ms))

    def assigned(self, partitions: Iterable[Hashable]) -> None:
        self.watermark.assigned(partitions, self._now_ms())

    def observe(self, partition: Hashable, obs: Observation) -> None:
        if obs.input in self._ignore:
            return
        now = self._now_ms()
        t = min(obs.received, now)
        self.watermark.observe(partition, t, now)
        for rule in self.rules:
            rule.observe(obs, t)

    # -- evaluation --------------------------------------------------------------------------
    def tick(self, caught_up: Iterable[Hashable] = ()) -> None:
        """Judge every step that became complete, publish, and save when everything is delivered."""
        now = self._now_ms()
        t = self.watermark.time(now, caught_up)
        if t is not None and self.data_start is not None:
            for rule in self.rules:
                self._run(rule, t)
            MONITOR_DELAY.set(max(0.0, (now - t) / 1000))
        self.outputs.poll()
        self._maybe_save(force=False)

    def _run(self, rule: Rule, t: int) -> None:
        assert self.data_start is not None
        step = rule.step_ms
        last = self._last.get(rule.name)
        if last is None:
            last = self._first_step(rule) - step
        for _ in range(MAX_STEPS_PER_TICK):
            boundary = last + step
            if boundary > t:
                break
            self._judge(rule, boundary)
            last = boundary
        self._last[rule.name] = last

    def _first_step(self, rule: Rule) -> int:
        """The first step boundary to judge: after the recorded ones, with a whole span of data read."""
        assert self.data_start is not None
        step, judged = rule.step_ms, self.judged.get(rule.name)
        covered = -(-(self.data_start + rule.span_ms) // step) * step
        if judged is None or covered > judged + step:
            if judged is not None:
                log.warning("rule %s: the steps from %s to %s are not judged: the monitor was down longer "
                            "than max_catch_up", rule.name, iso(judged + step), iso(covered - step))
            return covered
        return judged + step

    def _judge(self, rule: Rule, boundary: int) -> None:
        started = time.monotonic()
        rule.advance(boundary)
        verdict = rule.evaluate(self.book.open_keys(rule.name), self.book.frozen(rule.name, boundary))
        messages = self.book.update(rule.cfg, verdict, boundary)
        MONITOR_EVAL_SECONDS.labels(rule.name).observe(time.monotonic() - started)
        MONITOR_OPEN.labels(rule.name).set(self.book.count(rule.name))
        MONITOR_KEYS.labels(rule.name).set(rule.tracked_keys())
        self.outputs.publish(messages)
        self.judged[rule.name] = boundary
        self._dirty = True

    # -- state -------------------------------------------------------------------------------
    def _maybe_save(self, force: bool) -> None:
        if not self._dirty or not self.outputs.acknowledged():
            return
        if not force and time.monotonic() - self._saved_at < SAVE_INTERVAL:
            return
        state = MonitorState(dict(self.judged), self.book.incidents(), list(self.outputs.recent))
        try:
            save_state(self.cfg.state_file, state)
        except OSError as exc:
            log.error("cannot save the monitor state %s (alerts may repeat after a restart): %s",
                      self.cfg.state_file, exc)
            return
        self._dirty, self._saved_at = False, time.monotonic()

    def close(self, timeout: float) -> None:
        """Give the last messages ``timeout`` to be delivered, then save what was."""
        self.outputs.close(timeout)
        self._maybe_save(force=True)

    def _now_ms(self) -> int:
        return _ms(self.clock())


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
