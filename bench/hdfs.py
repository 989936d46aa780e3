"""HDFS uploader vs ``hdfs dfs -put`` (Hadoop's FsShell from the stack's own jars) of the same bytes.

eventd: the uploader consumes N Avro events from Kafka, writes Avro container files (deflate, its
default) and publishes them through WebHDFS; the clock runs from starting the process until the
consumer group has committed every offset (it commits only after the final rename), so it
includes process start, group join and the last files' roll age (2 s in the bench config).
Bytes are the published files' total (WebHDFS GETCONTENTSUMMARY).

Peer: ``FsShell -put`` of a local file of exactly that many bytes (the event bodies, repeated),
timed from JVM start to exit; the time of a no-op FsShell (JVM start + connect) is in the note.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

from bench import gen, stack
from bench.common import Ctx, Progress, Result, Watch, repeat, run_measured, say, wait_until
from bench.stack import EventdEnv

PARTITIONS = 6
WEBHDFS = "http://127.0.0.1:9870/webhdfs/v1"


def _webhdfs(path: str, op: str, method: str = "GET") -> dict:
    req = urllib.request.Request(f"{WEBHDFS}{path}?op={op}&user.name=root", method=method)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"{}")


def _hdfs_bytes(path: str) -> int:
    return int(_webhdfs(path, "GETCONTENTSUMMARY")["ContentSummary"]["length"])


def _fsshell(*args: str, cpus: str | None = None):  # type: ignore[no-untyped-def]
    return run_measured(stack.tool_argv("hadoop", "org.apache.hadoop.fs.FsShell", *args), cpus=cpus, timeout=900)


class Setup:
    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx = ctx
        self.env = EventdEnv(ctx.work / "hdfs", PARTITIONS)
        self.config = self.env.write_config(self.env.settings(("hdfs-uploader",)), "base.yaml")
        self.data, self.totals = gen.lines(n, seed=4, tag="H")
        say(f"hdfs: encoding and producing {n:,} Avro events")
        self.messages = gen.avro_messages(self.data, str(self.config))
        self.env.setup(self.config)
        stack.produce(self.messages)
        self.topics = self.env.event_topics(("impression", "click", "conversion", "bid"))
        self.payload = b"".join(v for _, _, v in self.messages)


def _uploader(ctx: Ctx, st: Setup, run: int, profile_out=None) -> tuple[Result, int]:  # type: ignore[no-untyped-def]
    s = st.env.settings(("hdfs-uploader",))
    base = f"{st.env.hdfs_base}/up{run}"
    group = f"{st.env.id}-hdfs{run}"
    s["hdfs_uploader"].update(base_dir=base, group_id=group, staging_dir=str(ctx.work / f"staging{run}"))
    path = st.env.write_config(s, f"up{run}.yaml")
    st.env.setup(path)
    argv = [sys.executable, "-m", "eventd", "role", "hdfs-uploader", "-c", str(path)]
    if profile_out is not None:
        argv = ctx.profiled_argv(argv, profile_out)
    t0 = time.monotonic()
    proc = stack.Proc(argv, ctx.work / f"uploader{run}.log", ctx.agent_cpus)
    watch = Watch({"uploader": proc.pid}, rss_of=["uploader"]).start()
    try:
        progress = Progress(lambda: stack.group_committed(group, st.topics))
        t1 = wait_until(lambda: not proc.alive() or progress.at_least(st.totals.events),
                        900, "uploader: every offset committed", interval=0.25)
        if not proc.alive():
            raise RuntimeError(f"uploader exited {proc.proc.returncode}:\n{proc.tail()}")
        cpu, rss = watch.stop()
    finally:
        proc.stop()
    size = _hdfs_bytes(base)
    return Result("hdfs", "eventd hdfs-uploader", "eventd", events=st.totals.events, seconds=t1 - t0, bytes=size,
                  cpu=cpu, rss=rss, steady=progress.steady_rate(), note="Avro deflate files via WebHDFS; clock includes start, group join, "
                                         "2 s roll age"), size


def _put(ctx: Ctx, st: Setup, run: int, size: int) -> Result:
    local = ctx.work / f"put{run}.bin"
    with open(local, "wb") as f:
        left = size
        while left > 0:
            piece = st.payload[:left]
            f.write(piece)
            left -= len(piece)
    target = f"{st.env.hdfs_base}/put{run}"
    noop = None if ctx.smoke else _fsshell("-test", "-d", "/", cpus=ctx.agent_cpus)
    f = _fsshell("-put", str(local), target, cpus=ctx.agent_cpus)
    local.unlink()
    if f.returncode:
        raise RuntimeError(f"FsShell -put exited {f.returncode}: {f.output[-400:]}")
    if _hdfs_bytes(target) != size:
        raise RuntimeError(f"FsShell -put stored {_hdfs_bytes(target)} bytes, expected {size}")
    return Result("hdfs", "Hadoop 3.4 FsShell -put", "peer", events=st.totals.events, seconds=f.seconds, bytes=size,
                  cpu={"fsshell": f.cpu}, rss={"fsshell": f.max_rss},
                  note="same bytes" + (f"; JVM start + connect alone (FsShell -test) took {noop.seconds:.1f} s" if noop else ""))


def run(ctx: Ctx) -> list[Result]:
    if not stack.role_available("hdfs-uploader"):
        return [Result("hdfs", "eventd hdfs-uploader", "eventd", error="role not available yet")]
    st = Setup(ctx, ctx.size(300_000, 2_000))
    try:
        def measure(i: int) -> list[Result]:
            try:
                up, size = _uploader(ctx, st, i)
            except Exception as exc:
                say(f"hdfs uploader failed: {exc}")
                return [Result("hdfs", "eventd hdfs-uploader", "eventd", error=f"{type(exc).__name__}: {exc}")]
            try:
                return [up, _put(ctx, st, i, size)]
            except Exception as exc:
                return [up, Result("hdfs", "Hadoop 3.4 FsShell -put", "peer", error=f"{type(exc).__name__}: {exc}")]
        results = repeat(ctx.runs, measure)
        if ctx.profile:
            ctx.add_profile("hdfs-uploader", f"{st.totals.events:,} events", lambda out: _uploader(ctx, st, 99, out))
        return results
    finally:
        stack.delete_topics_with_prefix(st.env.prefix)
        try:
            _webhdfs(f"{st.env.hdfs_base}", "DELETE&recursive=true", "DELETE")
        except Exception as exc:
            say(f"could not remove {st.env.hdfs_base}: {exc}")
