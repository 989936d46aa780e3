"""What a replay did, counted as it goes and printed at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from eventd.errors import InvalidEvent

# Reasons without a field, by the start of the parser's message → the summary's wording.
_REASON_PREFIXES = (("not valid JSON", "not valid JSON"), ("invalid UTF-8", "invalid UTF-8"),
                    ("expected a JSON object", "not a JSON object"), ("line of", "line too long"),
                    ("cannot encode", "cannot encode"))


def reason_key(exc: InvalidEvent) -> str:
    """Groups rejects for the summary: ``field: missing`` / ``field: invalid``, or the kind of line."""
    if exc.field:
        return f"{exc.field}: {'missing' if exc.reason == 'missing' else 'invalid'}"
    for prefix, key in _REASON_PREFIXES:
        if exc.reason.startswith(prefix):
            return key
    return exc.reason[:60]


@dataclass
class Counts:
    """Counters of one command run (all inputs)."""

    read: int = 0               # lines read, blank ones included
    accepted: int = 0           # valid events handed to the destination by this run
    delivered_before: int = 0   # valid events skipped: an earlier run's checkpoint covers them
    duplicates: int = 0         # of ``accepted``, those the destination found it already had
    blank: int = 0              # empty or whitespace-only lines, ignored
    rejected: Counter[str] = field(default_factory=Counter)
    files: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def reject(self, exc: InvalidEvent) -> None:
        self.rejected[reason_key(exc)] += 1


def render(counts: Counts, elapsed: float, target: str, dry_run: bool, outcome: str) -> str:
    """The end-of-run summary, one fact per line."""
    rate = counts.read / elapsed if elapsed > 0 else 0.0
    dest = "nowhere (dry run)" if dry_run else target
    lines = [f"replay {outcome}: {counts.files} input(s) → {dest}",
             f"  lines read:         {counts.read:>12,}",
             f"  accepted:           {counts.accepted - counts.duplicates:>12,}"
             + ("  (validated only)" if dry_run else f"  (new in {target})"),
             f"  duplicates skipped: {counts.delivered_before + counts.duplicates:>12,}"
             f"  ({counts.delivered_before:,} delivered by an earlier run, "
             f"{counts.duplicates:,} already in {target})",
             f"  rejected:           {counts.rejected_total:>12,}"]
    lines += [f"    {n:>10,}  {reason}" for reason, n in sorted(counts.rejected.items(), key=lambda kv: -kv[1])]
    if counts.blank:
        lines.append(f"  blank lines:        {counts.blank:>12,}  (ignored)")
    lines.append(f"  elapsed:            {elapsed:>11.1f}s  ({rate:,.0f} lines/s)")
    return "\n".join(lines)
