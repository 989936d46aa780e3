"""Collector vs rsyslog (omkafka) vs syslog-ng (kafka-c), with Kafka's ProducerPerformance as the
broker's ceiling.

Every forwarder gets the same JSON lines over TCP on loopback and writes them to Kafka with the same
producer settings: acks=all, idempotence on, lz4, linger 20 ms, 1 MiB batches, topics of the same
partition count. What each does with a line differs, and the table says so: eventd validates it,
wraps it in the envelope, encodes Avro, routes by type and keys by campaign, and writes it to its
durable disk queue before Kafka; rsyslog and syslog-ng forward the raw line from memory queues.

Measured per forwarder (pinned to the agent cores):
- throughput: N lines sent as fast as the socket takes them; the clock stops when Kafka holds all N;
- latency at a steady 5,000 events/s: send → visible to a consumer in Kafka (includes linger);
- eventd only: HTTP throughput (NDJSON bodies of 100 lines, 4 connections) and HTTP answer
  latency at 5,000 single-event requests/s (open loop);
- ProducerPerformance: the same lines (``--payload-file``) with the same producer settings.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from bench import gen, install, load, stack
from bench.common import Ctx, Result, Watch, percentile, repeat, run_measured, say, wait_until
from bench.stack import EventdEnv, Proc

PARTITIONS = 6
RATE = 5000
HTTP_BATCH = 100
HTTP_CONNECTIONS = 4
LIBRDKAFKA = {"acks": "all", "enable.idempotence": "true", "compression.codec": "lz4", "linger.ms": "20",
              "batch.size": str(1 << 20)}


class Forwarder:
    """A TCP → Kafka forwarder we start, measure and stop."""

    name = ""
    kind = "peer"
    topics: list[str]
    port: int
    proc: Proc

    def available(self) -> str:
        """"" if it can run here, else why not."""
        return ""

    def start(self, work: Path, cpus: str | None) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.proc.stop()


class Rsyslog(Forwarder):
    name = "rsyslog 8.2302 imtcp→omkafka"

    def available(self) -> str:
        if not install.rsyslogd() or not install.rsyslog_has_kafka():
            return "rsyslog-kafka not installed (bench/run installs it; the smoke test does not)"
        return ""

    def start(self, work: Path, cpus: str | None) -> None:
        d = work / "rsyslog"
        d.mkdir(parents=True, exist_ok=True)
        self.topics, self.port = [f"{topic_prefix(work)}rsyslog"], stack.free_port()
        stack.create_topics(self.topics, PARTITIONS)
        conf = [f'global(workDirectory="{d}" maxMessageSize="64k")',
                'module(load="imtcp" MaxSessions="200")', 'module(load="omkafka")',
                'template(name="raw" type="string" string="%rawmsg%")',
                'ruleset(name="tokafka") {',
                f'  action(type="omkafka" broker=["{stack.KAFKA}"] topic="{self.topics[0]}" template="raw"',
                '         confParam=[' + ", ".join(f'"{k}={v}"' for k, v in LIBRDKAFKA.items() if k != "acks") + "]",
                '         topicConfParam=["request.required.acks=-1"])', "}",
                f'input(type="imtcp" port="{self.port}" address="127.0.0.1" ruleset="tokafka")', ""]
        (d / "rsyslog.conf").write_text("\n".join(conf))
        self.proc = Proc([install.rsyslogd() or "rsyslogd", "-n", "-f", str(d / "rsyslog.conf"),
                          "-i", str(d / "rsyslogd.pid")], d / "rsyslog.log", cpus)
        stack.wait_port(self.port, proc=self.proc)


class SyslogNg(Forwarder):
    name = "syslog-ng 3.38 network→kafka-c"

    def available(self) -> str:
        return "" if install.syslog_ng() else "syslog-ng not unpacked (bench/run does it; the smoke test does not)"

    def start(self, work: Path, cpus: str | None) -> None:
        d = work / "syslog-ng"
        d.mkdir(parents=True, exist_ok=True)
        self.topics, self.port = [f"{topic_prefix(work)}syslog-ng"], stack.free_port()
        stack.create_topics(self.topics, PARTITIONS)
        config = " ".join(f'"{k}" => "{v}"' for k, v in LIBRDKAFKA.items())
        (d / "syslog-ng.conf").write_text(f"""@version: 3.38
options {{ log-msg-size(65536); stats-freq(0); }};
source s_in {{ network(ip("127.0.0.1") port({self.port}) transport("tcp") flags(no-parse)
                       max-connections(200) log-iw-size(100000)); }};
destination d_kafka {{ kafka-c(bootstrap-servers("{stack.KAFKA}") topic("{self.topics[0]}") message("$MSG")
                               config({config})); }};
log {{ source(s_in); destination(d_kafka); }};
""")
        argv, env = install.syslog_ng()  # type: ignore[misc]
        self.proc = Proc([*argv, "-F", "-f", str(d / "syslog-ng.conf"), "-R", str(d / "persist"),
                          "-p", str(d / "pid"), "-c", str(d / "ctl")], d / "syslog-ng.log", cpus, env=env)
        stack.wait_port(self.port, proc=self.proc)


class EventdCollector(Forwarder):
    name, kind = "eventd collector (TCP)", "eventd"

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.profile_out: Path | None = None

    def available(self) -> str:
        return "" if stack.role_available("collector") else "eventd.roles.collector has no main() yet"

    def start(self, work: Path, cpus: str | None) -> None:
        self.env = EventdEnv(work / "eventd", PARTITIONS)
        settings = self.env.settings(("collector",))
        self.port = int(settings["collector"]["tcp"]["listen"].rsplit(":", 1)[1])
        self.http_port = int(settings["collector"]["http"]["listen"].rsplit(":", 1)[1])
        self.config = self.env.write_config(settings)
        self.env.setup(self.config)
        self.topics = self.env.event_topics()
        argv = [sys.executable, "-m", "eventd", "role", "collector", "-c", str(self.config)]
        if self.profile_out is not None:
            argv = self.ctx.profiled_argv(argv, self.profile_out)
        self.proc = Proc(argv, work / "collector.log", cpus)
        stack.wait_port(self.port, proc=self.proc)
        stack.wait_port(self.http_port, proc=self.proc)


# ------------------------------------------------------------------------------------------------ measuring

def topic_prefix(work: Path) -> str:
    """Peer topics of one run: unique per bench/run invocation (its scratch dir) and step."""
    return f"{work.parent.name}.{work.name}."


def _throughput(fwd: Forwarder, bench: str, data: list[bytes], totals: gen.Totals,
                send) -> Result:  # type: ignore[no-untyped-def]
    counter = stack.OffsetCounter(fwd.topics)
    try:
        base = counter.count()
        watch = Watch({"agent": fwd.proc.pid}, rss_of=["agent"]).start()
        t0 = time.monotonic()
        send()
        t1 = wait_until(lambda: counter.count() >= base + len(data), 600, f"{fwd.name}: {len(data)} in Kafka")
        cpu, rss = watch.stop()
        extra = counter.count() - base - len(data)
    finally:
        counter.close()
    note = f"{extra} more than sent in Kafka" if extra else ""
    return Result(bench, fwd.name, fwd.kind, events=len(data), seconds=t1 - t0, bytes=totals.bytes,
                  cpu=cpu, rss=rss, note=note)


def _warm(fwd: Forwarder, warm: list[bytes]) -> None:
    counter = stack.OffsetCounter(fwd.topics)
    try:
        base = counter.count()
        load.blast_tcp(fwd.port, load.chunks(warm))
        wait_until(lambda: counter.count() >= base + len(warm), 120, f"{fwd.name}: warm-up in Kafka")
    finally:
        counter.close()


def _tcp_latency(fwd: Forwarder, lines: list[bytes], ids: list[int], tag: str) -> Result:
    arrivals = load.Arrivals(fwd.topics, tag)
    try:
        sent = load.paced_tcp(fwd.port, lines, ids, RATE)
        arrivals.wait(set(sent), 180)   # generous: a loaded machine must not read as a loss
    finally:
        arrivals.close()
    lat, missing = load.latencies_ms(sent, arrivals.seen)
    return Result("latency-tcp@5000/s", fwd.name, fwd.kind, events=len(lines), seconds=len(lines) / RATE,
                  latency_ms={"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat or [0])},
                  note="send → visible in Kafka" + (f"; {missing} not seen" if missing else ""))


def _eventd_http(fwd: EventdCollector, data: list[bytes], totals: gen.Totals, lat_lines: list[bytes]) -> list[Result]:
    bodies = [b"\n".join(data[i:i + HTTP_BATCH]) + b"\n" for i in range(0, len(data), HTTP_BATCH)]
    holder: dict[str, load.HttpOutcome] = {}
    thr = _throughput(fwd, "collector-http", data, totals,
                      lambda: holder.setdefault("o", load.http_requests(fwd.http_port, bodies, None, HTTP_CONNECTIONS)))
    thr.system = "eventd collector (HTTP)"
    thr.note = (f"{HTTP_BATCH} lines per POST, {HTTP_CONNECTIONS} connections; answers {dict(holder['o'].statuses)}"
                + (f"; {thr.note}" if thr.note else ""))
    out = load.http_requests(fwd.http_port, lat_lines, RATE, 32)
    lat = out.latencies_ms
    answer = Result("answer-http@5000/s", "eventd collector (HTTP)", "eventd", events=len(lat_lines),
                    seconds=out.seconds, latency_ms={"p50": percentile(lat, 50), "p99": percentile(lat, 99),
                                                     "max": max(lat or [0])},
                    note=f"1 event per POST, open loop, 32 connections; answers {dict(out.statuses)}")
    return [thr, answer]


def _one_forwarder(ctx: Ctx, fwd: Forwarder, run: int, data: list[bytes], totals: gen.Totals) -> list[Result]:
    why = fwd.available()
    if why:
        return [Result("collector-tcp", fwd.name, fwd.kind, error=why)]
    work = ctx.work / f"c{run}{type(fwd).__name__.lower()}"
    work.mkdir(parents=True, exist_ok=True)
    fwd.start(work, ctx.agent_cpus)
    try:
        tag = f"L{run}{type(fwd).__name__[:3]}"
        warm, _ = gen.lines(max(200, len(data) // 50), seed=99, tag=tag + "w")
        _warm(fwd, warm)
        results = [_throughput(fwd, "collector-tcp", data, totals, lambda: load.blast_tcp(fwd.port, load.chunks(data)))]
        n_lat = ctx.size(RATE * 20, 500)
        lat_lines, _ = gen.lines(n_lat, seed=7 + run, tag=tag)
        results.append(_tcp_latency(fwd, lat_lines, list(range(n_lat)), tag))
        if isinstance(fwd, EventdCollector):
            http_lat, _ = gen.lines(n_lat, seed=8 + run, tag=tag + "h")
            results += _eventd_http(fwd, data, totals, http_lat)
        return results
    except Exception as exc:
        say(f"{fwd.name} failed: {exc}\n{fwd.proc.tail()}")
        return [Result("collector-tcp", fwd.name, fwd.kind, error=f"{type(exc).__name__}: {exc}")]
    finally:
        fwd.stop()
        stack.delete_topics_with_prefix(topic_prefix(work))
        if isinstance(fwd, EventdCollector):
            stack.delete_topics_with_prefix(fwd.env.prefix)


_PP = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                 r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")


def _producer_perf(ctx: Ctx, run: int, data: list[bytes], totals: gen.Totals) -> list[Result]:
    """ProducerPerformance with our lines as payloads: flat out, then at the steady rate."""
    work = ctx.work / f"c{run}pp"
    work.mkdir(parents=True, exist_ok=True)
    payloads = work / "payloads.txt"
    payloads.write_bytes(b"\n".join(data[:20000]) + b"\n")
    topic = f"{topic_prefix(work)}pp"
    stack.create_topics([topic], PARTITIONS)
    props = ["bootstrap.servers=" + stack.KAFKA, "acks=all", "enable.idempotence=true", "compression.type=lz4",
             "linger.ms=20", f"batch.size={1 << 20}"]
    name = "Kafka ProducerPerformance (JVM)"
    out = []
    try:
        steps = [("collector-tcp", len(data), -1), ("latency-tcp@5000/s", ctx.size(RATE * 20, 500), RATE)]
        for bench, n, rate in steps[:1] if ctx.smoke else steps:   # smoke: one JVM start is enough
            f = run_measured(stack.tool_argv("kafka", "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                                             "--num-records", str(n), "--payload-file", str(payloads),
                                             "--throughput", str(rate), "--producer-props", *props),
                             cpus=ctx.agent_cpus, timeout=900)
            m = _PP.findall(f.output)
            if f.returncode or not m:
                out.append(Result(bench, name, "ceiling", error=f"exit {f.returncode}: {f.output[-300:]}"))
                continue
            sent, rps, mbs, avg, mx, p50, p95, p99 = m[-1]
            if rate < 0:
                out.append(Result(bench, name, "ceiling", events=int(sent), seconds=int(sent) / float(rps),
                                  bytes=int(float(mbs) * 1e6 * int(sent) / float(rps)), cpu={"agent": f.cpu},
                                  rss={"agent": f.max_rss},
                                  note="its own rate (from first send); CPU and RSS include JVM start-up"))
            else:
                out.append(Result(bench, name, "ceiling", events=int(sent), seconds=int(sent) / RATE,
                                  latency_ms={"p50": float(p50), "p99": float(p99), "max": float(mx)},
                                  note="send → broker ack (its own measure)"))
    finally:
        stack.delete_topics_with_prefix(topic)
    return out


def run(ctx: Ctx) -> list[Result]:
    n = ctx.size(300_000, 3_000)
    data, totals = gen.lines(n, seed=1, tag="T")
    ev = EventdCollector(ctx)
    forwarders: list[Forwarder] = [ev, Rsyslog(), SyslogNg()]

    def measure(i: int) -> list[Result]:
        results = []
        for fwd in forwarders:
            results += _one_forwarder(ctx, fwd, i, data, totals)
        return results + _producer_perf(ctx, i, data, totals)

    results = repeat(ctx.runs, measure)
    if ctx.profile and not ev.available():
        ctx.add_profile("collector", f"TCP, {len(data):,} events", lambda out: _profile(ctx, ev, data, totals, out))
    return results


def _profile(ctx: Ctx, ev: EventdCollector, data: list[bytes], totals: gen.Totals, out: Path) -> None:
    """One more TCP throughput run under cProfile; its figures are not reported."""
    ev.profile_out = out
    work = ctx.work / "cprof"
    work.mkdir(parents=True, exist_ok=True)
    ev.start(work, ctx.agent_cpus)
    try:
        _throughput(ev, "profile", data, totals, lambda: load.blast_tcp(ev.port, load.chunks(data)))
    finally:
        ev.stop()
        ev.profile_out = None
        stack.delete_topics_with_prefix(ev.env.prefix)
