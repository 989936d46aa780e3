"""Incident state: one alert when a key becomes anomalous, one resolved message when it has been
normal for ``resolve_after``, nothing in between — never a flood.

- A firing key with no open incident opens one (an ``alert`` message).
- A key of an open incident that the rule judges normal starts its clear time; once it has been
  clear for ``resolve_after`` (data time) the incident closes with a ``resolved`` message. Firing
  again before that cancels the clear time (flapping does not re-alert).
- A key the rule cannot judge right now (``Evaluation.undecided``) leaves its incident as it is.
- The incident's details (its frozen baseline) stay the key's reference while it is open and for
  the rule's span after it went clear, until the anomalous period has left the baseline window
  (:meth:`IncidentBook.frozen`).
- When opening the new keys would leave more than ``max_incidents`` incidents of one rule open, one
  summary incident (key ``*``) opens instead, naming the first keys; while it is open no further
  incident of that rule opens, and it resolves once no key outside the open ones has fired for
  ``resolve_after`` (a Kafka outage makes every site "drop" at once: that is one alert, not 10,000).

Times are the data times of evaluation steps (ms), so a replayed hour resolves exactly as it
happened. Incident ids are ``<rule>-<opened ms>-<key digest>``: deterministic, so an alert sent
again after a crash carries the same id and consumers can deduplicate.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from eventd.config.monitor import RuleConfig
from eventd.config.units import format_duration
from eventd.roles.monitor.rules import Evaluation

OVERFLOW_KEY = "*"
ALERT, RESOLVED = "alert", "resolved"


@dataclass
class Incident:
    id: str
    rule: str
    rule_kind: str
    key: str
    severity: str
    summary: str
    details: dict[str, Any]
    opened: int                      # data time (ms) of the step that opened it
    clear_since: int | None = None   # data time of the first normal step after it last fired

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Incident":
        return cls(**data)


@dataclass(frozen=True)
class AlertMessage:
    """What the outputs send: an incident opening (``alert``) or closing (``resolved``)."""

    kind: str
    incident: str
    rule: str
    rule_kind: str
    key: str
    severity: str
    summary: str
    opened: int                      # data time the incident opened (ms)
    at: int                          # data time of this message's step (ms)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class IncidentBook:
    """The open incidents of every rule."""

    def __init__(self, max_incidents: int) -> None:
        self.max_incidents = max_incidents
        self._open: dict[str, dict[str, Incident]] = {}
        self._after: dict[str, dict[str, tuple[dict[str, Any], int]]] = {}   # resolved: details, until

    def open_keys(self, rule: str) -> set[str]:
        return {k for k in self._open.get(rule, {}) if k != OVERFLOW_KEY}

    def frozen(self, rule: str, at: int) -> dict[str, dict[str, Any]]:
        """Key → details of the incidents whose baseline still applies at data time ``at``."""
        after = self._after.get(rule, {})
        for key in [k for k, (_, until) in after.items() if until <= at]:
            del after[key]
        refs = {k: details for k, (details, _) in after.items()}
        refs.update({k: i.details for k, i in self._open.get(rule, {}).items() if k != OVERFLOW_KEY})
        return refs

    def count(self, rule: str) -> int:
        return len(self._open.get(rule, {}))

    def incidents(self) -> list[Incident]:
        return [i for rule in self._open.values() for i in rule.values()]

    def restore(self, incidents: list[Incident]) -> None:
        """Reopen incidents recorded before a restart (no messages: they were announced)."""
        for inc in incidents:
            self._open.setdefault(inc.rule, {})[inc.key] = inc

    def update(self, rule: RuleConfig, ev: Evaluation, at: int) -> list[AlertMessage]:
        """Apply one evaluation step of ``rule`` at data time ``at``; returns the messages to send."""
        opened = self._open.setdefault(rule.name, {})
        messages = self._settle(rule, ev, at, opened)
        new = sorted(k for k in ev.firing if k not in opened)
        if not new or OVERFLOW_KEY in opened:
            return messages
        if len(opened) + len(new) > self.max_incidents:
            summary = _overflow(rule, ev, new, self.max_incidents)
            messages.append(self._open_incident(rule, opened, OVERFLOW_KEY, summary, at,
                                                {"count": len(new), "keys": new[:20]}))
        else:
            messages += [self._open_incident(rule, opened, k, ev.firing[k].summary, at, ev.firing[k].details)
                         for k in new]
        return messages

    def _settle(self, rule: RuleConfig, ev: Evaluation, at: int, opened: dict[str, Incident]) -> list[AlertMessage]:
        """Refresh or resolve the open incidents."""
        messages = []
        unexplained = any(k not in opened for k in ev.firing)
        for key, inc in list(opened.items()):
            firing = unexplained if key == OVERFLOW_KEY else key in ev.firing
            if firing:
                inc.clear_since = None
                continue
            if key in ev.undecided:
                continue
            if inc.clear_since is None:
                inc.clear_since = at
            if at - inc.clear_since >= rule.resolve_after * 1000:
                del opened[key]
                self._after.setdefault(rule.name, {})[key] = (inc.details, inc.clear_since + int(rule.span * 1000))
                messages.append(_message(RESOLVED, inc, at, f"resolved after {_lasted(inc, at)}: {inc.summary}"))
        return messages

    def _open_incident(self, rule: RuleConfig, opened: dict[str, Incident], key: str, summary: str, at: int,
                       details: dict[str, Any] | None = None) -> AlertMessage:
        digest = hashlib.blake2b(key.encode(), digest_size=4).hexdigest()
        inc = Incident(f"{rule.name}-{at}-{digest}", rule.name, rule.kind, key, rule.severity, summary,
                       dict(details or {}), at)
        opened[key] = inc
        return _message(ALERT, inc, at, summary)


def _overflow(rule: RuleConfig, ev: Evaluation, new: list[str], cap: int) -> str:
    examples = "; ".join(ev.firing[k].summary for k in new[:3])
    return (f"{len(new)} keys of rule {rule.name} anomalous at once (more than max_incidents={cap}); "
            f"one incident for all of them. First: {examples}")


def _message(kind: str, inc: Incident, at: int, summary: str) -> AlertMessage:
    return AlertMessage(kind, inc.id, inc.rule, inc.rule_kind, inc.key, inc.severity, summary, inc.opened, at,
                        dict(inc.details))


def _lasted(inc: Incident, at: int) -> str:
    return format_duration(max(1.0, round((at - inc.opened) / 1000)))
