#!/usr/bin/env python3
"""Lines per second of ``eventd replay --to kafka`` (and ``--dry-run``): now part of the benchmark
suite (``bench/replay.py``, which absorbed this script). Kept as a shortcut:

    python3 bench/replay_bench.py [--lines 100000]

runs ``bench/run --only replay --runs 1 --no-install`` sized to about ``--lines`` lines.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_LINES = 300_000   # bench/replay.py's full size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    args = ap.parse_args()
    run = os.path.join(REPO, "bench", "run")
    os.execv(sys.executable, [sys.executable, run, "--only", "replay", "--runs", "1", "--no-install",
                              "--scale", str(args.lines / FULL_LINES)])


if __name__ == "__main__":
    main()
