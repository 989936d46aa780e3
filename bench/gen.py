"""The deterministic event generator every benchmark uses: JSON lines with known totals.

``lines(n, seed, tag)`` gives the same ``n`` lines for the same arguments: impressions, clicks and
conversions over a fixed set of campaigns, each with an id ``<tag>-<i>`` (so a benchmark can find
an event again in Kafka, whatever the encoding, by that id) and money as decimal strings whose
exact micro-unit totals are returned with them.

``avro_messages`` turns the lines into the Kafka messages eventd's collector would produce (same
parser, codec, topic and key), for the consumer roles' benchmarks.

Command line: ``bench/gen.py N [--seed S] [--tag T] > events.ndjson`` (totals on stderr).
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

TYPES = ("impression", "impression", "impression", "impression", "click", "click", "conversion")
CAMPAIGNS = 2000
ADVERTISERS = 200
PUBLISHERS = 500
BASE_TIME_S = 1_767_225_600          # 2026-01-01T00:00:00Z: every event falls in that day's first hours
COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN", "JP", "PL")
DEVICES = ("mobile", "desktop", "tablet")
AGENTS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
          "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36")


def advertiser_of(campaign: int) -> int:
    """Each campaign belongs to one advertiser account (the balance benchmark needs it fixed)."""
    return 1 + campaign % ADVERTISERS


@dataclass
class Totals:
    """What the generated lines add up to; money in micro-units."""

    events: int = 0
    bytes: int = 0
    by_type: Counter = field(default_factory=Counter)
    cost: Counter = field(default_factory=Counter)          # by campaign
    revenue: Counter = field(default_factory=Counter)       # by publisher
    cost_by_advertiser: Counter = field(default_factory=Counter)

    @property
    def cost_total(self) -> int:
        return sum(self.cost.values())

    @property
    def revenue_total(self) -> int:
        return sum(self.revenue.values())


def _money(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def event(rng: random.Random, tag: str, i: int) -> tuple[dict, int, int]:
    """Event ``i``: (the JSON object, cost micros, revenue micros)."""
    kind = TYPES[i % len(TYPES)]
    campaign = 1 + rng.randrange(CAMPAIGNS)
    cost = {"impression": rng.randrange(100, 5_000), "click": rng.randrange(50_000, 900_000),
            "conversion": rng.randrange(1_000_000, 20_000_000)}[kind]
    revenue = cost * 7 // 10
    obj = {"id": f"{tag}-{i}", "type": kind, "time": BASE_TIME_S * 1000 + (i * 7919) % 7_200_000,
           "campaign_id": campaign, "advertiser_id": advertiser_of(campaign),
           "publisher_id": 1 + rng.randrange(PUBLISHERS), "site_id": 1 + rng.randrange(3000),
           "zone_id": 1 + rng.randrange(10000), "country": rng.choice(COUNTRIES), "device": rng.choice(DEVICES),
           "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
           "user_agent": rng.choice(AGENTS), "cost": _money(cost), "revenue": _money(revenue)}
    if kind == "click":
        obj["impression_id"] = f"{tag}-imp-{i - 1}"
    elif kind == "conversion":
        obj.update(click_id=f"{tag}-clk-{i - 2}", goal="purchase", value=_money(cost * 3))
    return obj, cost, revenue


def iter_lines(n: int, seed: int = 1, tag: str = "b") -> Iterator[tuple[bytes, dict, int, int]]:
    rng = random.Random(seed)
    for i in range(n):
        obj, cost, revenue = event(rng, tag, i)
        yield json.dumps(obj, separators=(",", ":")).encode(), obj, cost, revenue


def lines(n: int, seed: int = 1, tag: str = "b") -> tuple[list[bytes], Totals]:
    """``n`` JSON lines (without newline) and their totals."""
    out, totals = [], Totals()
    for line, obj, cost, revenue in iter_lines(n, seed, tag):
        out.append(line)
        totals.events += 1
        totals.bytes += len(line) + 1
        totals.by_type[obj["type"]] += 1
        totals.cost[obj["campaign_id"]] += cost
        totals.revenue[obj["publisher_id"]] += revenue
        totals.cost_by_advertiser[obj["advertiser_id"]] += cost
    return out, totals


def avro_messages(data: list[bytes], config_path: str) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of each line exactly as eventd's collector would send it."""
    from eventd.config import load_config
    from eventd.event.envelope import EventParser
    from eventd.event.schemas import SchemaStore
    cfg = load_config(config_path)
    store = SchemaStore.load(cfg.events.schema_dir)
    parser = EventParser(store, cfg.events, cfg.kafka.topics.prefix, cfg.kafka.topics.partitions, "benchhost")
    out = []
    for i, line in enumerate(data):
        ev = parser.parse(line, "bench", 1_767_225_600_000 + i, lambda: "unused")
        out.append((ev.topic, ev.key, ev.value))
    return out


def main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default="b")
    a = ap.parse_args(argv)
    data, totals = lines(a.n, a.seed, a.tag)
    sys.stdout.buffer.write(b"\n".join(data) + b"\n")
    print(json.dumps({"events": totals.events, "bytes": totals.bytes, "by_type": totals.by_type,
                      "cost_micros": totals.cost_total, "revenue_micros": totals.revenue_total}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
