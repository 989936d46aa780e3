#!/usr/bin/env python3
"""Lines per second of one ``eventd replay`` process with ``--to kafka`` (and ``--dry-run``, to
show what validation and encoding alone cost), on a generated legacy file.

    python3 bench/replay_bench.py [--lines 100000] [--kafka 127.0.0.1:9092]

Needs Kafka (``init/devstack up kafka``). Uses its own topic prefix and deletes its topics after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import yaml  # noqa: E402

from eventd.config import load_config  # noqa: E402
from eventd.event.schemas import SchemaStore  # noqa: E402
from eventd.kafka.clients import new_admin  # noqa: E402
from eventd.kafka.topics import ensure_topics, needed_topics  # noqa: E402
from eventd.replay.testdata import generate  # noqa: E402


def write_config(tmp: str, kafka: str, prefix: str) -> str:
    settings = {"node": {"host": "bench", "state_dir": os.path.join(tmp, "state"), "log_level": "warning"},
                "metrics": {"enabled": False},
                "kafka": {"bootstrap_servers": [kafka], "topics": {"prefix": prefix, "partitions": 6,
                          "dead_letter": prefix + "_deadletter", "control": prefix + "_control"}},
                "events": {"schema_dir": os.path.join(REPO, "conf", "schemas")},
                **{role: {"enabled": False} for role in ("collector", "clickhouse_loader", "balance_aggregator",
                                                         "hdfs_uploader")}}
    path = os.path.join(tmp, "eventd.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(settings, fh)
    return path


def timed(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=False, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--kafka", default="127.0.0.1:9092")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        config = write_config(tmp, args.kafka, f"bench{uuid.uuid4().hex[:8]}.")
        cfg = load_config(config)
        store = SchemaStore.load(cfg.events.schema_dir)
        data = os.path.join(tmp, "legacy.json")
        exp = generate(data, args.lines, bad_every=10**9)
        print(f"file: {exp.lines:,} lines, {os.path.getsize(data) / 2**20:.1f} MiB, "
              f"{exp.events:,} events", flush=True)
        ensure_topics(cfg, store)
        try:
            base = [sys.executable, "-m", "eventd", "replay", data, "-c", config]
            for label, extra in (("--dry-run", ["--dry-run"]), ("--to kafka", ["--to", "kafka"])):
                seconds = timed(base + extra)
                print(f"{label:<11} {seconds:6.1f} s  {exp.lines / seconds:10,.0f} lines/s "
                      "(whole process: start-up, flush and summary included)", flush=True)
        finally:
            admin = new_admin(cfg.kafka)
            admin.delete_topics(list(needed_topics(cfg, store)))
            admin.close()


if __name__ == "__main__":
    main()
