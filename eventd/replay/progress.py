"""Progress for the person running a replay: a one-line bar on a terminal, otherwise a plain
log line every ``interval`` seconds (cron, CI and ``nohup`` logs stay readable).

Shows lines read, lines per second and, for inputs whose size is known (files, not stdin),
the share done and an ETA from the on-disk bytes consumed (compressed bytes for ``.gz``).
:meth:`Progress.tick` is called for every line and reads the clock only every
:data:`CHECK_EVERY` calls, so it costs nothing measurable.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, TextIO

log = logging.getLogger(__name__)
CHECK_EVERY = 512
_BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Reports the progress of a run over one input at a time."""

    def __init__(self, out: TextIO = sys.stderr, tty: bool | None = None, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._out, self._clock = out, clock
        self._tty = out.isatty() if tty is None else tty
        self._interval = 0.2 if self._tty else interval
        self._start = clock()
        self._last = self._start
        self._calls = 0
        self._name = ""
        self._size: int | None = None
        self._position: Callable[[], int] = lambda: 0
        self._file_start, self._file_lines = self._start, 0
        self.lines = 0

    def start_file(self, name: str, size: int | None, position: Callable[[], int]) -> None:
        self._name, self._size, self._position = name, size, position
        self._file_start, self._file_lines = self._clock(), 0

    def tick(self) -> None:
        """One more line read."""
        self.lines += 1
        self._file_lines += 1
        self._calls += 1
        if self._calls >= CHECK_EVERY:
            self._calls = 0
            now = self._clock()
            if now - self._last >= self._interval:
                self._last = now
                self._report(now)

    def _report(self, now: float) -> None:
        rate = self.lines / max(now - self._start, 1e-9)
        done = self._fraction()
        eta = ""
        if done:
            eta = f"  ETA {_duration((now - self._file_start) * (1 - done) / done)}"
        if self._tty:
            filled = int(_BAR_WIDTH * (done or 0))
            bar = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done * 100:3.0f}% " if done is not None else ""
            self._out.write(f"\r{bar}{self._name}  {self.lines:,} lines  {rate:,.0f}/s{eta}\x1b[K")
            self._out.flush()
        else:
            pct = f" ({done * 100:.0f}%)" if done is not None else ""
            log.info("%s: %d lines read in all%s, %.0f lines/s%s", self._name, self.lines, pct, rate, eta)

    def _fraction(self) -> float | None:
        if not self._size:
            return None
        return min(self._position() / self._size, 1.0)

    def finish(self) -> None:
        """Clear the bar before the summary is printed."""
        if self._tty and self.lines >= CHECK_EVERY:
            self._out.write("\r\x1b[K")
            self._out.flush()
