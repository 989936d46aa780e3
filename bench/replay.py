"""``eventd replay FILE --to kafka`` vs the collector path, on the same file's lines.

(This absorbs ``bench/replay_bench.py``, now a shim: its ``--dry-run`` figure — what validation and
encoding alone cost — is the ``replay-dry-run`` row here.)

- replay: one process, timed from its start to its exit (it exits once Kafka acknowledged every
  event), pinned to the agent cores; the number of messages that arrived is checked.
- collector: the collector role (already running, pinned alike) gets the same lines over TCP; timed
  from the first byte sent until Kafka holds them all.
Both write the same Avro messages to the same topics with the same producer settings.
"""

from __future__ import annotations

import sys

from bench import collector, gen, load, stack
from bench.common import Ctx, Result, repeat, run_measured, say


def _dry_run(ctx: Ctx, run: int, data: list[bytes], totals: gen.Totals) -> Result:
    env = stack.EventdEnv(ctx.work / f"dry{run}", collector.PARTITIONS)
    config = env.write_config(env.settings(()))
    path = env.work / "events.ndjson"
    path.write_bytes(b"\n".join(data) + b"\n")
    f = run_measured([sys.executable, "-m", "eventd", "replay", str(path), "--dry-run", "-c", str(config)],
                     cpus=ctx.agent_cpus, timeout=1800, cwd=stack.REPO)
    if f.returncode != 0:
        raise RuntimeError(f"eventd replay --dry-run exited {f.returncode}: {f.output[-500:]}")
    return Result("replay-dry-run", "eventd replay --dry-run", "eventd", events=len(data), seconds=f.seconds,
                  bytes=totals.bytes, cpu={"replay": f.cpu}, rss={"replay": f.max_rss},
                  note="validation + Avro encoding only, no Kafka; clock includes process start")


def _replay(ctx: Ctx, run: int, data: list[bytes], totals: gen.Totals) -> Result:
    env = stack.EventdEnv(ctx.work / f"replay{run}", collector.PARTITIONS)
    config = env.write_config(env.settings(()))
    env.setup(config)
    path = env.work / "events.ndjson"
    path.write_bytes(b"\n".join(data) + b"\n")
    counter = stack.OffsetCounter(env.event_topics())
    try:
        f = run_measured([sys.executable, "-m", "eventd", "replay", str(path), "-c", str(config)],
                         cpus=ctx.agent_cpus, timeout=1800, cwd=stack.REPO)
        arrived = counter.count()
    finally:
        counter.close()
        stack.delete_topics_with_prefix(env.prefix)
    if f.returncode != 0:
        raise RuntimeError(f"eventd replay exited {f.returncode}: {f.output[-500:]}")
    note = "clock includes process start" + ("" if arrived == len(data) else f"; {arrived} in Kafka, not {len(data)}")
    return Result("replay", "eventd replay --to kafka", "eventd", events=len(data), seconds=f.seconds,
                  bytes=totals.bytes, cpu={"replay": f.cpu}, rss={"replay": f.max_rss}, note=note)


def _collector(ctx: Ctx, run: int, data: list[bytes], totals: gen.Totals) -> Result:
    fwd = collector.EventdCollector(ctx)
    work = ctx.work / f"rc{run}"
    work.mkdir(parents=True, exist_ok=True)
    fwd.start(work, ctx.agent_cpus)
    try:
        warm, _ = gen.lines(max(200, len(data) // 50), seed=98, tag=f"RW{run}")
        collector._warm(fwd, warm)
        r = collector._throughput(fwd, "replay", data, totals, lambda: load.blast_tcp(fwd.port, load.chunks(data)))
    finally:
        fwd.stop()
        stack.delete_topics_with_prefix(fwd.env.prefix)
    r.system, r.kind = "eventd collector path (TCP)", "peer"
    r.note = "process already running; clock from first byte sent" + (f"; {r.note}" if r.note else "")
    return r


def run(ctx: Ctx) -> list[Result]:
    data, totals = gen.lines(ctx.size(300_000, 3_000), seed=6, tag="R")

    def measure(i: int) -> list[Result]:
        out = []
        for side, name, kind in ((_replay, "eventd replay --to kafka", "eventd"),
                                 (_collector, "eventd collector path (TCP)", "peer"),
                                 (_dry_run, "eventd replay --dry-run", "eventd")):
            try:
                out.append(side(ctx, i, data, totals))
            except Exception as exc:
                say(f"replay bench {name} failed: {exc}")
                out.append(Result("replay-dry-run" if side is _dry_run else "replay", name, kind,
                                  error=f"{type(exc).__name__}: {exc}"))
        return out

    return repeat(ctx.runs, measure)
