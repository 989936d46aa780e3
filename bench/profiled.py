"""Run ``python -m eventd ARGS...`` under cProfile in EVERY thread, and summarise profiles.

    python bench/profiled.py OUT.pstats eventd role collector -c CONFIG

The roles do their work in several threads (the collector's intake, sender and syncer; the
Kafka client's I/O thread), and cProfile sees only the thread it was enabled in. So each thread
gets its own profiler (``threading.setprofile`` is too late for threads already started; we
wrap ``Thread.run`` before eventd is imported) and all are merged into OUT when the program
exits (after SIGTERM: the role stops gracefully and returns).

(py-spy was tried first: it cannot read this machine's pyenv-built interpreter — "Failed to
find python version from target process".)
"""

from __future__ import annotations

import cProfile
import io
import pstats
import runpy
import sys
import threading

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _install() -> None:
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        with _lock:
            _profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


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


def top_costs(path: str, n: int = 12, skip: tuple[str, ...] = ("threading.py", "{method 'acquire'",
                                                              "{built-in method time.sleep", "selectors.py",
                                                              "{method 'poll' of 'select.epoll'",
                                                              "{method 'wait'")) -> str:
    """The ``n`` functions with the most time of their own (tottime), waits left out."""
    s = pstats.Stats(path)
    total = sum(v[2] for v in s.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in s.stats.items():  # type: ignore[attr-defined]
        name = f"{func}" if file == "~" else f"{file.split('site-packages/')[-1].split('/work/main/')[-1]}:{line}({func})"
        if any(k in name for k in skip):
            continue
        rows.append((tt, ct, nc, name))
    rows.sort(reverse=True)
    buf = io.StringIO()
    buf.write("| own time % | own s | incl. s | calls | function |\n|---:|---:|---:|---:|---|\n")
    for tt, ct, nc, name in rows[:n]:
        buf.write(f"| {100 * tt / total:.1f} | {tt:.2f} | {ct:.2f} | {nc:,} | `{name}` |\n")
    return buf.getvalue()


def main() -> None:
    out = sys.argv[1]
    module, args = sys.argv[2], sys.argv[3:]
    _install()
    main_prof = cProfile.Profile()
    with _lock:
        _profiles.append(main_prof)
    sys.argv = [module, *args]
    main_prof.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        main_prof.disable()
        _dump(out)


if __name__ == "__main__":
    main()
