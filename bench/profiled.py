"""Run ``python -m eventd ARGS...`` under cProfile in EVERY thread, and summarise profiles.

    python bench/profiled.py OUT.pstats eventd role collector -c CONFIG

The roles do their work in several threads (the collector's intake, sender and syncer; the
Kafka client's I/O thread), and cProfile sees only the thread it was enabled in. So each thread
gets its own profiler (we wrap ``Thread._bootstrap_inner`` before eventd is imported; wrapping
``run`` would miss subclasses that override it) and all are merged into OUT when the program
exits (after SIGTERM: the role stops gracefully and returns).

Every profiler counts the CPU time of its own thread (``time.thread_time``), not the wall
clock: a thread blocked in the Kafka client's ``poll`` or a lock costs nothing, so the tables show
where the CPU goes. librdkafka's own threads are not Python threads and are not in the profile;
their CPU is in the benchmark's CPU µs/event.

(py-spy was tried first: it cannot read this machine's pyenv-built interpreter — "Failed to
find python version from target process".)
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import runpy
import sys
import threading
import time
from pathlib import Path

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
REPO = Path(__file__).resolve().parents[1]


def _install() -> None:
    # _bootstrap_inner, not run: subclasses (the roles' worker threads) override run().
    original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def bootstrap(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        with _lock:
            _profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread._bootstrap_inner = bootstrap  # type: ignore[attr-defined]


def _dump(out: str) -> None:
    with _lock:
        profs = list(_profiles)
    stats = None
    for p in profs:
        p.disable()
        if stats is None:
            stats = pstats.Stats(p)
        else:
            stats.add(p)
    if stats is not None:
        stats.dump_stats(out)


WAITS = ("threading.py", "method 'acquire'", "built-in method time.sleep", "selectors.py",
         "method 'poll' of 'select", "method 'select' of 'select", "method 'wait'", "method 'recv", "method 'get' of '_queue",
         "method 'release'")


def top_costs(path: str, n: int = 12, skip: tuple[str, ...] = WAITS) -> str:
    """The ``n`` functions with the most CPU time of their own (tottime); waiting (locks, poll,
    sleep, recv; near zero in CPU time anyway) is left out of the list and of the total the
    percentages are of."""
    s = pstats.Stats(path)
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in s.stats.items():  # type: ignore[attr-defined]
        where = file.split("site-packages/")[-1].split(f"{REPO}/")[-1].split("/lib/python3.11/")[-1]
        name = f"{func}" if file == "~" else f"{where}:{line}({func})"
        if any(k in name for k in skip):
            continue
        rows.append((tt, ct, nc, name))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows) or 1.0
    buf = io.StringIO()
    buf.write("| % of CPU | own CPU s | incl. CPU s | calls | function |\n|---:|---:|---:|---:|---|\n")
    for tt, ct, nc, name in rows[:n]:
        buf.write(f"| {100 * tt / total:.1f} | {tt:.2f} | {ct:.2f} | {nc:,} | `{name}` |\n")
    return buf.getvalue()


def main() -> None:
    out = sys.argv[1]
    module, args = sys.argv[2], sys.argv[3:]
    _install()
    main_prof = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(main_prof)
    sys.argv = [module, *args]
    sys.path.insert(0, os.getcwd())   # as `python -m` does; our own directory (bench/) is sys.path[0]
    main_prof.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        main_prof.disable()
        _dump(out)


if __name__ == "__main__":
    main()
