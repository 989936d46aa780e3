"""Measuring and reporting, shared by every benchmark.

- CPU and memory of the measured processes come from the kernel: ``/proc/PID/stat`` (utime+stime
  of every thread) over the measured interval for servers, ``wait4`` rusage for commands that
  run to completion; peak RSS from ``VmHWM`` or ``ru_maxrss``.
- Each figure is the median of ``runs`` runs; latencies are nearest-rank percentiles.
- The measured program (eventd's role or the peer) runs pinned with ``taskset`` to the same
  cores (``--agent-cpus``), the load generator to others (``--client-cpus``).
- A :class:`Result` per (benchmark, system); :class:`Report` writes the table and the JSON.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ process figures

def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of every thread of ``pid`` so far (0.0 if it is gone)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = data[data.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss(pid: int) -> int:
    """Peak resident set (VmHWM) of ``pid`` in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watch:
    """CPU used by some long-running processes between :meth:`start` and :meth:`stop`, and their
    peak RSS (``rss_of``: the processes we started; a shared server's lifetime peak says nothing)."""

    def __init__(self, pids: dict[str, int], rss_of: Iterable[str] = ()) -> None:
        self.pids, self.rss_of = pids, set(rss_of)
        self._cpu0: dict[str, float] = {}

    def start(self) -> "Watch":
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> tuple[dict[str, float], dict[str, int]]:
        cpu = {name: max(0.0, cpu_seconds(pid) - self._cpu0[name]) for name, pid in self.pids.items()}
        rss = {name: peak_rss(self.pids[name]) for name in self.rss_of}
        return cpu, rss


@dataclass
class Finished:
    """A command run to completion, with the kernel's account of it."""

    returncode: int
    seconds: float
    cpu: float
    max_rss: int
    output: str


def run_measured(argv: list[str], cpus: str | None = None, timeout: float = 3600,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> Finished:
    """Run ``argv`` (pinned to ``cpus``) to completion; wall time, CPU and peak RSS from ``wait4``."""
    t0 = time.monotonic()
    proc = subprocess.Popen(pin(argv, cpus), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    reader.join(10)
    return Finished(proc.returncode, seconds, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024,
                    b"".join(out).decode(errors="replace"))


def pin(argv: list[str], cpus: str | None) -> list[str]:
    """``argv`` under ``taskset -c cpus`` (taskset execs it: the pid stays the program's)."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


# ------------------------------------------------------------------------------------------------ statistics

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v == v]   # drop NaN
    return statistics.median(vals) if vals else float("nan")


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll until ``predicate()`` is truthy; returns the monotonic time it became so."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Progress:
    """Samples how many events a sink holds, to measure a consumer role's rate after its first
    output: the whole clock of a short run is mostly process start, group join and the first
    batch, which the per-process throughput the issues ask about leaves out."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count
        self.first: tuple[float, int] | None = None     # (time, count) when something was first out
        self.last: tuple[float, int] | None = None

    def at_least(self, total: int) -> bool:
        """Sample now; whether ``total`` events are out."""
        n, now = self._count(), time.monotonic()
        if n > 0 and self.first is None:
            self.first = (now, n)
        self.last = (now, n)
        return n >= total

    def steady_rate(self) -> float:
        """Events per second from the first sample with output to the last; NaN if it all came
        out at once (a run too short for the sink's batch size)."""
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return float("nan")
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


# -------------------------------------------------------------------------------------------------- results

@dataclass
class Result:
    """One system's figures in one benchmark (the median over its runs once merged)."""

    bench: str                 # e.g. "collector-tcp": rows with the same bench are compared
    system: str                # e.g. "eventd collector", "rsyslog 8.2302 omkafka"
    kind: str                  # "eventd" | "peer" | "ceiling"
    events: int = 0
    seconds: float = 0.0
    bytes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)     # measured process → CPU seconds
    rss: dict[str, int] = field(default_factory=dict)       # measured process → peak RSS bytes
    latency_ms: dict[str, float] = field(default_factory=dict)  # "p50", "p99", …
    steady: float = float("nan")  # events/s after the first output (consumer roles, see Progress)
    note: str = ""
    runs: int = 1
    error: str = ""            # set when this system could not be measured (and why)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mb_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 and self.bytes else float("nan")

    @property
    def cpu_us_per_event(self) -> float:
        return sum(self.cpu.values()) / self.events * 1e6 if self.events and self.cpu else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(rate=self.rate, mb_s=self.mb_s, cpu_us_per_event=self.cpu_us_per_event)
        return d


def merge_runs(runs: list[Result]) -> Result:
    """The median of each figure over ``runs`` (same bench and system)."""
    ok = [r for r in runs if not r.error]
    if not ok:
        return runs[-1]
    first = ok[0]
    rates = [r.rate for r in ok]
    mid = ok[rates.index(sorted(rates)[(len(rates) - 1) // 2])] if len(ok) > 2 else first
    return Result(first.bench, first.system, first.kind, events=first.events,
                  seconds=median(r.seconds for r in ok), bytes=first.bytes,
                  cpu={k: median(r.cpu.get(k, float("nan")) for r in ok) for k in first.cpu},
                  rss={k: int(median(r.rss.get(k, 0) for r in ok)) for k in first.rss},
                  latency_ms={k: median(r.latency_ms.get(k, float("nan")) for r in ok) for k in first.latency_ms},
                  steady=median(r.steady for r in ok), note=mid.note, runs=len(ok))


def repeat(runs: int, measure: Callable[[int], list[Result]]) -> list[Result]:
    """Call ``measure(i)`` ``runs`` times; merge each system's results into their medians.
    A run that raises is recorded as an error for the systems it had not measured."""
    by_key: dict[tuple[str, str], list[Result]] = {}
    for i in range(runs):
        for r in measure(i):
            by_key.setdefault((r.bench, r.system), []).append(r)
    return [merge_runs(rs) for rs in by_key.values()]


def _fmt(v: float, digits: int = 0) -> str:
    if v != v:   # NaN
        return "–"
    return f"{v:,.{digits}f}"


class Report:
    """The results of one ``bench/run``: table (markdown) and JSON under bench/results/."""

    def __init__(self, args: dict) -> None:
        self.started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.args = args
        self.results: list[Result] = []

    def add(self, results: list[Result]) -> None:
        self.results.extend(results)
        for r in results:
            say(f"{r.bench:<22} {r.system:<34} " + (f"ERROR {r.error}" if r.error else
                f"{_fmt(r.rate)} ev/s  {_fmt(r.cpu_us_per_event, 1)} µs/ev  {r.latency_ms or ''}"))

    def ratios(self) -> list[tuple[str, str, str, float]]:
        """(bench, eventd system, peer system, ratio) for every pair measured: eventd events/s over
        the peer's (higher is better for eventd), or for latency benches eventd's p99 over the
        peer's (lower is better)."""
        out = []
        benches = dict.fromkeys(r.bench for r in self.results)
        for bench in benches:
            rows = [r for r in self.results if r.bench == bench and not r.error]
            for e in (r for r in rows if r.kind == "eventd"):
                for p in (r for r in rows if r.kind != "eventd"):
                    if e.latency_ms and p.latency_ms:
                        x = e.latency_ms["p99"] / p.latency_ms["p99"] if p.latency_ms.get("p99") else float("nan")
                    else:
                        x = e.rate / p.rate if p.rate else float("nan")
                    out.append((bench, e.system, p.system, x))
        return out

    def machine(self) -> str:
        cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name")), platform.processor())
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
        load = os.getloadavg()
        return (f"{os.cpu_count()} × {cpu}, {mem:,} MiB RAM, {platform.system()} {platform.release()}, "
                f"Python {platform.python_version()}; load average at start {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")

    def markdown(self) -> str:
        head = ("| benchmark | system | events | events/s | events/s after first output | MB/s | CPU µs/event "
                "| peak RSS MiB | latency p50 / p99 ms | runs | note |\n|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
        rows = []
        for r in self.results:
            if r.error:
                rows.append(f"| {r.bench} | {r.system} | | | | | | | | | not measured: {' '.join(r.error.split())} |")
                continue
            lat = (f"{_fmt(r.latency_ms.get('p50', float('nan')), 2)} / {_fmt(r.latency_ms.get('p99', float('nan')), 2)}"
                   if r.latency_ms else "")
            rss = "+".join(_fmt(v / 2**20) for v in r.rss.values()) if r.rss else ""
            rows.append(f"| {r.bench} | {r.system} | {r.events:,} | {_fmt(r.rate)} | {_fmt(r.steady)} | {_fmt(r.mb_s, 1)} | "
                        f"{_fmt(r.cpu_us_per_event, 1)} | {rss} | {lat} | {r.runs} | {r.note} |")
        ratio_rows = [f"| {b} | {e} | {p} | {'p99 latency' if b.startswith('latency') else 'events/s'} | "
                      f"**{_fmt(x, 2)}** |" for b, e, p, x in self.ratios()]
        ratios = ("| benchmark | eventd | peer | of | eventd/peer |\n|---|---|---|---|---:|\n"
                  + "\n".join(ratio_rows)) if ratio_rows else "(no pair measured on both sides)"
        return (f"Run {self.started} on {self.machine()}.\n"
                f"Command: `bench/run {' '.join(self.args.get('argv', []))}`\n\n"
                f"Ratios (the headline):\n\n{ratios}\n\nAll figures:\n\n{head}\n" + "\n".join(rows) + "\n")

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        data = {"started": self.started, "machine": self.machine(), "args": self.args,
                "results": [r.as_dict() for r in self.results],
                "ratios": [dict(bench=b, eventd=e, peer=p, ratio=x) for b, e, p, x in self.ratios()]}
        md = self.markdown()
        for name in (self.stamp, "latest"):
            (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
            (RESULTS / f"{name}.md").write_text(md)
        return RESULTS / f"{self.stamp}.md"


def replace_between(path: Path, marker: str, text: str) -> bool:
    """Replace what lies between ``<!-- bench:MARKER:start -->`` and its end marker in ``path``."""
    start, end = f"<!-- bench:{marker}:start -->", f"<!-- bench:{marker}:end -->"
    doc = path.read_text() if path.exists() else ""
    if start not in doc or end not in doc:
        return False
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text.rstrip()}\n{end}{tail}")
    return True


@dataclass
class Ctx:
    """What every benchmark module's ``run(ctx)`` gets."""

    smoke: bool
    runs: int
    agent_cpus: str | None        # the measured program (eventd role or peer) runs here
    client_cpus: str | None       # the load generator (this process) runs here
    work: Path                    # scratch directory, removed at the end
    profile: bool                 # also profile each eventd role once (cProfile, every thread)
    scale: float = 1.0            # multiplies the full-size event counts
    profiles: dict[str, str] = field(default_factory=dict)   # role → top-costs table

    def size(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else max(smoke, int(full * self.scale))

    def add_profile(self, role: str, what: str, run: Callable[[Path], object]) -> None:
        """``run(out)`` runs the role once under bench/profiled.py writing ``out``; its top costs are
        kept for the report. A failure here is reported, never loses the benchmark's figures."""
        from bench.profiled import top_costs
        out = self.work / f"{role}.pstats"
        try:
            run(out)
            self.profiles[role] = f"{what}, every thread merged:\n\n" + top_costs(str(out))
        except Exception as exc:
            say(f"profiling {role} failed: {type(exc).__name__}: {exc}")

    def profiled_argv(self, role_argv: list[str], out: Path) -> list[str]:
        """``python -m eventd …`` → the same under bench/profiled.py writing ``out``."""
        assert role_argv[1:3] == ["-m", "eventd"], role_argv
        return [role_argv[0], str(REPO / "bench" / "profiled.py"), str(out), "eventd", *role_argv[3:]]
