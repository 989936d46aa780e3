"""The benchmark suite in its smoke mode (tiny sizes, one run), so it cannot rot: every benchmark
must measure its eventd side and the peers that live in the stack, with exact end states.

It runs ``bench/run --smoke --no-install --no-stack``: the test never installs Debian packages.
rsyslog and syslog-ng are measured where ``bench/run`` installed them before, and must then work;
elsewhere they are reported as not installed. No figure is asserted on: speed is not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO

sys.path.insert(0, str(REPO))
from bench import install  # noqa: E402

EVENTD_BENCHES = ("collector-tcp", "collector-http", "latency-tcp@5000/s", "answer-http@5000/s", "clickhouse",
                  "hdfs", "balances", "replay")
STACK_PEERS = {"collector-tcp": "Kafka ProducerPerformance (JVM)", "clickhouse": "ClickHouse 18.16 Kafka engine",
               "hdfs": "Hadoop 3.4 FsShell -put", "balances": "MariaDB 10.11 direct (same statements)",
               "replay": "eventd collector path (TCP)"}


@pytest.mark.timeout(900)
def test_bench_smoke(stack: None, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run"), "--smoke", "--no-install", "--no-stack",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads(out.read_text())["results"]
    rows = {(r["bench"], r["system"]): r for r in results}
    log = proc.stderr[-5000:]

    for bench in EVENTD_BENCHES:
        mine = [r for r in results if r["bench"] == bench and r["kind"] == "eventd"]
        assert mine, f"no eventd result for {bench}:\n{log}"
        for r in mine:
            assert not r["error"], f"{bench} {r['system']}: {r['error']}"
            assert r["events"] > 0 and r["seconds"] > 0, r
            assert "DIFFER" not in r["note"] and "not seen" not in r["note"], r

    for bench, system in STACK_PEERS.items():
        r = rows.get((bench, system))
        assert r is not None, f"no {system} result in {bench}:\n{log}"
        assert not r["error"] and r["events"] > 0, r
        assert "DIFFER" not in r["note"], r

    for r in results:
        if r["bench"].startswith(("latency", "answer")) and not r["error"]:
            assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"], r

    peers = {"rsyslog 8.2302 imtcp→omkafka": install.rsyslogd() and install.rsyslog_has_kafka(),
             "syslog-ng 3.38 network→kafka-c": install.syslog_ng() is not None}
    for system, installed in peers.items():
        r = rows[("collector-tcp", system)]
        if installed:
            assert not r["error"] and r["events"] > 0, r
        else:
            assert "not installed" in r["error"] or "not unpacked" in r["error"], r


def test_codec_bench_runs_and_reports_every_path() -> None:
    """``bench/codec.py`` needs no service; a tiny run must still measure every path."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "codec.py"), "--count", "300", "--repeat", "1",
                           "--cpu", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "µs/event" not in line]
    assert [r.split(" | ")[0:2] for r in rows] == [
        ["| parse + encode: JSON line → Avro message", "eventd"], ["| encode", "eventd (compiled)"],
        ["| encode", "fastavro 1.13.1"], ["| decode", "eventd (compiled)"], ["| decode", "fastavro 1.13.1"],
        ["| intake: parse + encode + queue append", "eventd"], ["| clickhouse row: decode + map", "eventd"],
        ["| balance charge: decode + charge", "eventd"],
        ["| consume: poll → Message, per message", "eventd (librdkafka stand-in)"]]
