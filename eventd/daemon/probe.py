"""Events per second and Kafka lag of role processes, read from their Prometheus endpoints
(``metrics.listen`` port + the process's offset, see :func:`eventd.roles.base._metrics_offset`)."""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from eventd.config import Config
from eventd.roles.base import _metrics_offset

EVENTS = "eventd_events_out"     # counter family name (the parser drops the _total suffix)
LAG = "eventd_kafka_lag"


@dataclass(frozen=True)
class Sample:
    events: float          # events delivered to the role's sink so far
    lag: int | None        # messages behind, summed over the process's partitions; None: not a consumer


def metrics_port(cfg: Config, role: str, slot: int) -> int:
    return cfg.metrics.base_port + _metrics_offset(cfg, role, slot)


def scrape(host: str, port: int, timeout: float = 1.0) -> Sample | None:
    """One reading, or None when the endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
            text = resp.read().decode()
    except (OSError, ValueError):
        return None
    events, lag = 0.0, None
    for family in text_string_to_metric_families(text):
        if family.name == EVENTS:
            events += sum(s.value for s in family.samples if s.name.endswith("_total"))
        elif family.name == LAG and family.samples:
            lag = (lag or 0) + int(sum(s.value for s in family.samples))
    return Sample(events, lag)


@dataclass(frozen=True)
class Rates:
    events_per_second: float | None
    lag: int | None


def endpoints(cfg: Config, processes: dict[str, int]) -> dict[str, str]:
    """``"role-slot"`` → ``"host:port"`` of each process's endpoint (empty when metrics are off);
    ``processes`` maps each enabled role to its process count."""
    if not cfg.metrics.enabled:
        return {}
    return {f"{role}-{slot}": f"{cfg.metrics.host}:{metrics_port(cfg, role, slot)}"
            for role, n in processes.items() for slot in range(n)}


def rates(addresses: dict[str, str], interval: float = 1.0) -> dict[str, Rates]:
    """Read each endpoint (name → ``host:port``) twice, ``interval`` seconds apart, all in parallel."""
    if not addresses:
        return {}
    names = list(addresses)
    targets = [addresses[n].rsplit(":", 1) for n in names]
    with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
        t0 = time.monotonic()
        first = list(pool.map(lambda t: scrape(t[0], int(t[1])), targets))
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        t1 = time.monotonic()
        second = list(pool.map(lambda t: scrape(t[0], int(t[1])), targets))
    elapsed = max(t1 - t0, 1e-3)
    out = {}
    for name, a, b in zip(names, first, second):
        out[name] = Rates(None, None) if a is None or b is None else \
            Rates(max(b.events - a.events, 0.0) / elapsed, b.lag)
    return out
