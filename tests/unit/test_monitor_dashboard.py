"""conf/grafana/eventd-dashboard.json shows every metric eventd exports, and only those."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

import eventd.metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "conf" / "grafana" / "eventd-dashboard.json"
SUFFIXES = {Counter: ("_total",), Gauge: ("",), Histogram: ("_bucket", "_count", "_sum")}


def exported() -> dict[str, tuple[str, ...]]:
    """Metric name -> the series names Prometheus sees for it."""
    out = {}
    for value in vars(eventd.metrics).values():
        for kind, suffixes in SUFFIXES.items():
            if isinstance(value, kind):
                out[value._name] = tuple(value._name + s for s in suffixes)
    return out


def expressions() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


def test_every_metric_has_a_panel() -> None:
    used = set(re.findall(r"\beventd_[a-z_]+", " ".join(expressions())))
    missing = [name for name, series in exported().items() if not used & set(series)]
    assert not missing, f"add a panel to {DASHBOARD.name} for: {', '.join(missing)}"


def test_no_panel_queries_a_metric_that_does_not_exist() -> None:
    known = {s for series in exported().values() for s in series}
    unknown = set(re.findall(r"\beventd_[a-z_]+", " ".join(expressions()))) - known
    assert not unknown, unknown


def test_panels_do_not_overlap() -> None:
    cells = set()
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
