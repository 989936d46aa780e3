"""Legacy NDJSON files with known totals, for the replay tests and ``bench/replay_bench.py``.

:func:`generate` writes ``n`` event lines (impressions, clicks, conversions; some with an
``id``, some without, some byte-identical id-less copies that must stay distinct events)
with bad lines and blank lines sprinkled in, and returns what a correct replay must produce.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from dataclasses import dataclass, field

from eventd.replay.ids import event_id

# Bad lines, each with the summary reason a correct replay reports for it.
BAD_LINES: tuple[tuple[bytes, str], ...] = (
    (b'{"type": "click", "time": 1767225600, "campaign_id": 1', "not valid JSON"),
    (b'["not", "an", "object"]', "not a JSON object"),
    (b'{"time": 1767225600, "campaign_id": 1}', "type: missing"),
    (b'{"type": "click", "campaign_id": 1}', "time: missing"),
    (b'{"type": "click", "time": "yesterday", "campaign_id": 1}', "time: invalid"),
    (b'{"type": "click", "time": 1767225600, "campaign_id": "abc"}', "campaign_id: invalid"),
    (b'{"type": "click", "time": 1767225600, "campaign_id": 1, "cost": "-1.5"}', "cost: invalid"),
    (b'{"type": "click", "time": 1767225600, "cost": "0.0000001"}', "cost: invalid"),
    (b'{"type": "impression", "time": 1767225600, "country": "\xff\xfe"}', "invalid UTF-8"),
)
TYPES = ("impression", "click", "conversion")


@dataclass
class Expected:
    """What replaying the generated file must give."""

    events: int = 0
    ids: set[str] = field(default_factory=set)
    order: list[str] = field(default_factory=list)            # ids in file order
    by_type: Counter[str] = field(default_factory=Counter)
    cost: Counter[int] = field(default_factory=Counter)       # micro-units by campaign
    revenue: Counter[int] = field(default_factory=Counter)    # micro-units by campaign
    earned: Counter[int] = field(default_factory=Counter)     # revenue micro-units by publisher
    rejects: dict[int, str] = field(default_factory=dict)     # line number → reason key
    blank: int = 0
    lines: int = 0

    @property
    def rejected(self) -> Counter[str]:
        return Counter(self.rejects.values())


def _event(rng: random.Random, i: int) -> tuple[dict, int, int]:
    kind = TYPES[i % 3]
    cost = rng.randrange(0, 5_000_000)       # micro-units
    revenue = cost * 7 // 10
    obj = {"type": kind, "time": 1_767_225_600 + i, "campaign_id": 1 + i % 7, "advertiser_id": 100 + i % 3,
           "publisher_id": 200 + i % 5, "site_id": 300 + i % 4, "country": rng.choice(["US", "DE", "FR"]),
           "device": rng.choice(["mobile", "desktop"]), "cost": f"{cost // 1_000_000}.{cost % 1_000_000:06d}",
           "revenue": f"{revenue // 1_000_000}.{revenue % 1_000_000:06d}", "legacy_source": "v1"}
    return obj, cost, revenue


def generate(path: str, n: int, seed: int = 1, bad_every: int = 97, with_id_every: int = 2,
             copies_every: int = 50) -> Expected:
    """Write ``n`` events (plus bad and blank lines) to ``path`` (gzipped if it ends in .gz)."""
    rng = random.Random(seed)
    exp, lines, copies = Expected(), [], Counter[bytes]()
    for i in range(n):
        obj, cost, revenue = _event(rng, i)
        if i % with_id_every == 0:
            obj["id"] = f"legacy-{seed}-{i}"
        line = json.dumps(obj).encode()
        repeat = 2 if i % copies_every == 1 and "id" not in obj else 1   # identical id-less lines
        for _ in range(repeat):
            lines.append(line)
            if "id" in obj:
                exp.order.append(obj["id"])
            else:
                exp.order.append(event_id(line, copies[line]))
                copies[line] += 1
            exp.ids.add(exp.order[-1])
            exp.events += 1
            exp.by_type[obj["type"]] += 1
            exp.cost[obj["campaign_id"]] += cost
            exp.revenue[obj["campaign_id"]] += revenue
            exp.earned[obj["publisher_id"]] += revenue
        if i % bad_every == bad_every - 1:
            bad, reason = BAD_LINES[(i // bad_every) % len(BAD_LINES)]
            lines.append(bad)
            exp.rejects[len(lines)] = reason
        if i % 500 == 250:
            lines.append(b"")
            exp.blank += 1
    exp.lines = len(lines)
    data = b"\n".join(lines) + b"\n"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(data)
    return exp
