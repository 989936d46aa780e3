"""The fault scenarios. Each one injects its faults while events stream into the pipeline and
returns once they are cleared (every service back, every process resumed); random choices come
from ``ctx.rng``, seeded, so a failing run is replayed with the same ``--seed``.

A scenario may also change the config before the world is provisioned (``prepare``: a fault proxy
in front of a service, the collector's queue on a small tmpfs) and check what only it knows
(``verify``: e.g. that bad input was counted)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from random import Random
from typing import Any, Callable

from harness import DEVSTACK, TestEnv, devstack, wait_for
from pipeline import ROLES, Daemon, Sender

from faults.proxy import FaultProxy

CONSUMERS = ("clickhouse-loader", "balance-aggregator", "hdfs-uploader")
SESSION_TIMEOUT = 6.0          # kafka.consumer.session_timeout of the test config (harness.TestEnv)


@dataclass
class Context:
    """What a scenario works with. ``daemon`` and ``sender`` are set once the pipeline runs."""
    env: TestEnv
    settings: dict[str, Any]
    rng: Random
    cycles: int
    log: Callable[[str], None]
    daemon: Daemon | None = None
    sender: Sender | None = None
    notes: list[str] = field(default_factory=list)
    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)        # a scenario's own bookkeeping
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def pause(self, low: float, high: float) -> None:
        time.sleep(self.rng.uniform(low, high))

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def cleanup(self) -> None:
        for fn in reversed(self._cleanups):
            fn()

    def pid(self, role: str) -> int | None:
        """The pid of the role's (single) process, from the record it writes itself."""
        try:
            pid = json.loads((self.env.tmp / "run" / "procs" / f"{role}-0.json").read_text())["pid"]
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, KeyError, TypeError):     # not running: no record, or pid null
            return None

    def restarts(self, role: str) -> int:
        assert self.daemon is not None
        return self.daemon.procs()[f"{role}-0"]["restarts"]


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Context], None]
    services: tuple[str, ...] = ()          # shared services it stops: held exclusively (harness.ServiceFault)
    prepare: Callable[[Context], None] = lambda ctx: None
    verify: Callable[[Context], list[str]] = lambda ctx: []
    recovery_timeout: float = 240.0


# -- processes -----------------------------------------------------------------------------------
def kill_roles(ctx: Context) -> None:
    """kill -9 of a random role at a random moment, ``cycles`` times (the daemon restarts it)."""
    for _ in range(ctx.cycles):
        ctx.pause(0.5, 4.0)
        victim = ctx.rng.choice(ROLES)
        if pid := ctx.pid(victim):
            os.kill(pid, signal.SIGKILL)
            ctx.notes.append(f"killed {victim}")
        ctx.log(f"kill -9 {victim} ({pid})")


def zombie_consumer(ctx: Context) -> None:
    """SIGSTOP of a consumer role past its Kafka session timeout (the group gives its partitions
    to nobody or a restarted peer), then SIGCONT: the woken process must not write stale work."""
    for _ in range(ctx.cycles):
        victim = ctx.rng.choice(CONSUMERS)
        pid = wait_for(lambda: ctx.pid(victim), 60, f"{victim} running")
        os.kill(pid, signal.SIGSTOP)
        ctx.log(f"SIGSTOP {victim} ({pid})")
        try:
            ctx.pause(SESSION_TIMEOUT + 2, SESSION_TIMEOUT + 6)
        finally:
            os.kill(pid, signal.SIGCONT)
        ctx.notes.append(f"stopped {victim}")
        ctx.pause(2, 5)


# -- services ------------------------------------------------------------------------------------
def restart_service(name: str, low: float = 2, high: float = 8) -> Callable[[Context], None]:
    """``devstack kill NAME`` mid-stream, down for a random while, then ``devstack up NAME``."""
    def fault(ctx: Context) -> None:
        for _ in range(ctx.cycles):
            ctx.pause(1, 3)
            devstack("kill", name)
            ctx.log(f"killed {name}")
            ctx.pause(low, high)
            devstack("up", name)
            ctx.log(f"{name} back")
    return fault


def freeze_service(name: str, low: float, high: float) -> Callable[[Context], None]:
    """SIGSTOP a service (it keeps its sockets: connections open, nothing answers), then SIGCONT."""
    def fault(ctx: Context) -> None:
        for _ in range(ctx.cycles):
            ctx.pause(1, 3)
            pid = int(subprocess.run([sys.executable, str(DEVSTACK), "pid", name], check=True, capture_output=True,
                                     text=True).stdout)
            os.kill(pid, signal.SIGSTOP)
            ctx.log(f"SIGSTOP {name}")
            try:
                ctx.pause(low, high)
            finally:
                os.kill(pid, signal.SIGCONT)
            ctx.log(f"SIGCONT {name}")
    return fault


def one_of(*faults: Callable[[Context], None]) -> Callable[[Context], None]:
    """Each cycle runs one of ``faults``, chosen by the seed."""
    def fault(ctx: Context) -> None:
        cycles, ctx.cycles = ctx.cycles, 1
        try:
            for _ in range(cycles):
                ctx.rng.choice(faults)(ctx)
        finally:
            ctx.cycles = cycles
    return fault


# -- the collector's queue on a small tmpfs ----------------------------------------------------------
QUEUE_TMPFS = "2m"


def queue_on_tmpfs(ctx: Context) -> None:
    """The queue directory on a 2 MiB tmpfs, its cap far above it: the disk fills before the cap."""
    mount = ctx.env.tmp / "queue-tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={QUEUE_TMPFS}", "tmpfs", str(mount)], check=True)
    ctx.on_cleanup(lambda: subprocess.run(["umount", "-l", str(mount)], check=False))
    ctx.settings["collector"]["queue"].update({"dir": str(mount / "queue"), "segment_size": "256KiB",
                                               "max_size": "64MiB"})
    ctx.settings["collector"]["max_body_size"] = "1MiB"


def fill_queue(ctx: Context) -> None:
    """Kafka down, events keep coming until the collector refuses them (its disk is full), a while
    more, then Kafka back: the queue drains and the collector accepts again."""
    sender = ctx.sender
    assert sender is not None

    def refused() -> int:
        return sum(n for answer, n in sender.answers.items() if answer != "202")

    for _ in range(ctx.cycles):
        devstack("kill", "kafka")
        ctx.log("killed kafka; filling the queue")
        before, end = refused(), time.monotonic() + 120
        while refused() == before and time.monotonic() < end:
            sender.post(sender.batch(500))
        ctx.notes.append(f"refused while full: {refused() > before}")
        ctx.pause(2, 4)
        devstack("up", "kafka")
        ctx.log("kafka back")
        wait_for(lambda: sender.post(sender.batch(10)), 120, "the collector to accept again", 1)


def collector_survived(ctx: Context) -> list[str]:
    """The collector refused events while its disk was full, and was never restarted."""
    assert ctx.sender is not None
    out = [] if ctx.restarts("collector") == 0 else ["the collector was restarted (it must refuse, not die)"]
    if not any(a != "202" for a in ctx.sender.answers):
        out.append("the collector never refused an event: the queue's disk did not fill")
    return out


# -- the fault proxy -----------------------------------------------------------------------------
def behind_proxies(ctx: Context) -> None:
    """ClickHouse, MariaDB and the NameNode reached through fault proxies (WebHDFS's DataNode leg
    follows the NameNode's redirect to the DataNode itself, so it is not proxied)."""
    for name, port in (("clickhouse", 9000), ("mariadb", 3306), ("namenode", 9870)):
        proxy = FaultProxy(("127.0.0.1", port)).start()
        ctx.proxies[name] = proxy
        ctx.on_cleanup(proxy.close)
    s = ctx.settings
    s["clickhouse_loader"]["destinations"][0]["hosts"] = [f"127.0.0.1:{ctx.proxies['clickhouse'].port}"]
    s["balance_aggregator"]["mariadb"]["address"] = f"127.0.0.1:{ctx.proxies['mariadb'].port}"
    s["hdfs_uploader"]["namenode"] = f"127.0.0.1:{ctx.proxies['namenode'].port}"


def proxy_faults(ctx: Context) -> None:
    """Each cycle: one proxy turns to latency, resets or a blackhole for a few seconds."""
    for _ in range(ctx.cycles):
        ctx.pause(1, 3)
        name = ctx.rng.choice(sorted(ctx.proxies))
        proxy = ctx.proxies[name]
        mode = ctx.rng.choice(("latency", "reset", "blackhole"))
        if mode == "latency":
            proxy.latency(ctx.rng.uniform(0.2, 1.5))
        else:
            getattr(proxy, mode)()
        ctx.log(f"{name} proxy: {mode}")
        ctx.notes.append(f"{name} {mode}")
        ctx.pause(3, 8)
        proxy.pass_through()


# -- bad input -----------------------------------------------------------------------------------
BAD_LINES = (
    b"not json at all",
    b'{"id": "x", "type": "click", ',                                    # cut short
    b"[1, 2, 3]",                                                        # not an object
    b'{"type": "click", "time": "yesterday", "campaign_id": 1}',         # time not a number
    b'{"type": "click", "campaign_id": 1}',                              # no time
    b'{"type": "click", "time": 1, "campaign_id": 1, "cost": "12abc"}',  # money not a number
    b"\xff\xfe\x00binary\x80",                                           # not UTF-8
    b'{"type": "click", "pad": "' + b"x" * (2 << 20) + b'"}',            # over events.max_line_size
)


def all_inputs(ctx: Context) -> None:
    """Every input on: HTTP, TCP and the unix stream socket are on by the test config; UDP, the
    unix datagram socket and the file tail (a log file the web app would write) are switched on here."""
    from harness import free_port
    c = ctx.settings["collector"]
    c["udp"] = {"enabled": True, "listen": f"127.0.0.1:{free_port()}"}
    c["unix_datagram"]["enabled"] = True
    c["unix"]["enabled"] = True
    c["tail"] = {"enabled": True, "paths": [str(ctx.env.tmp / "app-*.log")], "poll_interval": "200ms",
                 "positions": str(ctx.env.tmp / "tail-positions.json")}


@dataclass
class Tally:
    """Bad lines sent on the inputs that answer, how many of them the answers rejected, and the
    good events sent where nothing answers (datagrams, the tailed file)."""
    bad_sent: int = 0
    bad_rejected: int = 0
    datagram_ids: list[str] = field(default_factory=list)


def bad_input_storm(ctx: Context) -> None:
    """Bad lines mixed with good ones on every input, ``cycles`` rounds; good events sent on a
    stream input count as acknowledged once the answer says so; datagrams and tailed lines get no
    answer and are offered only (``verify`` checks they all arrived: nothing else was wrong)."""
    tally = ctx.extra["tally"] = Tally()
    for _ in range(ctx.cycles):
        _http_mixed(ctx, tally)
        _stream_mixed(ctx, tally, socket.AF_INET, ("127.0.0.1", ctx.env.tcp_port))
        _stream_mixed(ctx, tally, socket.AF_UNIX, ctx.settings["collector"]["unix"]["path"])
        _datagrams(ctx, tally)
        _tailed(ctx, tally)
        ctx.pause(0.2, 1.0)


def _mixed(ctx: Context, n_good: int, bad: tuple[bytes, ...] = BAD_LINES) -> tuple[list[dict[str, Any]], list[bytes]]:
    """``n_good`` new good events (offered) and their lines shuffled with the ``bad`` ones."""
    assert ctx.sender is not None
    good = ctx.sender.batch(n_good)
    lines = [json.dumps(e).encode() for e in good] + list(bad)
    ctx.rng.shuffle(lines)
    ctx.sender.offered.update((e["id"], e) for e in good)
    return good, lines


def _http_mixed(ctx: Context, tally: Tally) -> None:
    import http.client
    good, lines = _mixed(ctx, 20)
    conn = http.client.HTTPConnection("127.0.0.1", ctx.env.http_port, timeout=30)
    conn.request("POST", "/v1/events", b"\n".join(lines) + b"\n", {"Content-Type": "application/x-ndjson"})
    resp = conn.getresponse()
    _answered(ctx, tally, good, json.loads(resp.read()), resp.status)
    conn.close()


def _stream_mixed(ctx: Context, tally: Tally, family: int, address: Any) -> None:
    """One connection: the lines, a half-close, then every answer line until the collector closes."""
    good, lines = _mixed(ctx, 20)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(address)
        s.sendall(b"\n".join(lines) + b"\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    answers = [json.loads(a) for a in data.splitlines()]
    total = {k: sum(a.get(k, 0) for a in answers) for k in ("accepted", "rejected")}
    _answered(ctx, tally, good, total, 202)


def _answered(ctx: Context, tally: Tally, good: list[dict[str, Any]], doc: dict[str, Any], status: int) -> None:
    """Good events are acknowledged when the answer accepted every good line."""
    assert ctx.sender is not None
    tally.bad_sent += len(BAD_LINES)
    tally.bad_rejected += doc.get("rejected", 0)
    if status == 202 and doc.get("accepted") == len(good):
        ctx.sender.accepted.extend(good)
    else:
        ctx.notes.append(f"mixed batch answered {status} {str(doc)[:200]}")


def _datagrams(ctx: Context, tally: Tally) -> None:
    """UDP and unix datagrams: one event per datagram, no answer (the oversized line cannot be sent)."""
    c = ctx.settings["collector"]
    host, port = c["udp"]["listen"].rsplit(":", 1)
    for family, address in ((socket.AF_INET, (host, int(port))), (socket.AF_UNIX, c["unix_datagram"]["path"])):
        good, lines = _mixed(ctx, 5, BAD_LINES[:-1])
        tally.datagram_ids += [e["id"] for e in good]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            for line in lines:
                s.sendto(line, address)


def _tailed(ctx: Context, tally: Tally) -> None:
    """Lines appended to a tailed log file: no answer either (offered only, like datagrams)."""
    good, lines = _mixed(ctx, 10)
    tally.datagram_ids += [e["id"] for e in good]
    with open(ctx.env.tmp / "app-events.log", "ab") as fh:
        fh.write(b"\n".join(lines) + b"\n")


def bad_input_verify(ctx: Context) -> list[str]:
    from pipeline import clickhouse_ids
    tally: Tally = ctx.extra["tally"]
    out = []
    if tally.bad_rejected != tally.bad_sent:
        out.append(f"{tally.bad_sent} bad lines sent on HTTP/TCP/unix, {tally.bad_rejected} answered as rejected")
    seen = clickhouse_ids(ctx.env.db)
    if missing := [i for i in tally.datagram_ids if i not in seen]:
        out.append(f"{len(missing)} good events sent by datagram or the tailed file not delivered, e.g. {missing[:3]}")
    if ctx.restarts("collector"):
        out.append("the collector was restarted by bad input")
    return out


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("kill-roles", kill_roles),
    Scenario("zombie-consumer", zombie_consumer),
    Scenario("kafka-restart", restart_service("kafka"), services=("kafka",)),
    Scenario("clickhouse-zookeeper", one_of(restart_service("clickhouse"), freeze_service("zookeeper", 4, 10)),
             services=("clickhouse", "zookeeper")),
    Scenario("mariadb-kill", restart_service("mariadb", 1, 5), services=("mariadb",)),
    Scenario("hdfs", one_of(restart_service("hdfs-namenode"), restart_service("hdfs-datanode"),
                            freeze_service("hdfs-datanode", 5, 15)), services=("hdfs-namenode", "hdfs-datanode")),
    Scenario("queue-full", fill_queue, services=("kafka",), prepare=queue_on_tmpfs, verify=collector_survived),
    Scenario("proxy", proxy_faults, prepare=behind_proxies),
    Scenario("bad-input", bad_input_storm, prepare=all_inputs, verify=bad_input_verify),
)}
