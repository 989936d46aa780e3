"""The HDFS uploader under faults, against the real Kafka and HDFS: kill -9 in the middle of an
upload, between upload and rename, and after a rename (exact points, via EVENTD_FAILPOINTS)
and at random moments; the NameNode stopped for a while (staging fills, consumption pauses,
everything arrives once it is back); a DataNode that accepts connections and never answers
(calls time out, are retried, nothing hangs). Each ends with the exactly-once check."""

from __future__ import annotations

import http.client
import http.server
import random
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from harness import ServiceFault, TestEnv, devstack, free_port, hdfs_walk, wait_for
from test_hdfs_uploader import (all_committed, check_archive, committed, hdfs_settings, make_events,
                                produce, setup, start_uploader)


def _prepare(env: TestEnv, n: int, seed: int, bad: int = 3, **hdfs: Any) -> tuple[Path, list, list]:
    config = env.write_config(hdfs_settings(env, **hdfs))
    setup(env, config)
    messages, produced = make_events(env, config, n, seed=seed, bad=bad)
    return config, messages, produced


def test_kill9_during_upload_and_around_rename(env: TestEnv, processes: list) -> None:
    config, messages, produced = _prepare(env, 600, seed=3, roll_age="1s", roll_size="16KiB",
                                          upload_parallelism=2)
    produce(messages)
    points = [("hdfs-upload-midway", 3), ("hdfs-before-rename", 4), ("hdfs-after-rename", 3)]
    for i, (point, nth) in enumerate(points):
        proc = start_uploader(env, config, processes, name=f"hdfs-{i}", failpoints=f"{point}={nth}")
        assert proc.proc.wait(90) == -9, proc.log()
        assert f"failpoint {point} reached" in proc.log()
        if point != "hdfs-after-rename":
            assert any("/_tmp/" in p for p, _ in hdfs_walk(env.hdfs_base)), "the kill left a temporary file"
    final = start_uploader(env, config, processes, name="hdfs-final")
    all_committed(env)
    assert final.terminate() == 0
    logs = "".join(p.log() for p in processes)
    assert "regenerating it, skipping files in place" in logs
    assert "is already in place" in logs            # the after-rename kill left a placed file behind
    assert "deleted stale temporary file" in logs
    check_archive(env, produced)


def test_kill9_at_random_moments(env: TestEnv, processes: list) -> None:
    config, messages, produced = _prepare(env, 600, seed=4, roll_age="500ms", roll_size="8KiB")
    rnd = random.Random(4)
    chunks = [messages[i::3] for i in range(3)]
    for i in range(2):
        proc = start_uploader(env, config, processes, name=f"hdfs-{i}")
        wait_for(lambda p=proc: "starts at" in p.log(), 60, "the uploader's partitions")
        produce(chunks[i])      # files are being placed from now on: kill somewhere in there
        time.sleep(rnd.uniform(0.3, 2.5))
        proc.kill9()
    produce(chunks[2])
    final = start_uploader(env, config, processes, name="hdfs-final")
    all_committed(env)
    assert final.terminate() == 0
    check_archive(env, produced)


def test_namenode_down_fills_staging_then_catches_up(env: TestEnv, processes: list) -> None:
    with ServiceFault("hdfs-namenode"):
        config, messages, produced = _prepare(env, 800, seed=5, roll_age="1s", roll_size="4KiB",
                                              staging_max_size="16KiB", block_size="4KiB", retry_backoff="500ms",
                                              retry_backoff_max="2s", timeout="3s")
        proc = start_uploader(env, config, processes)
        produce(messages[:200])
        all_committed(env)
        devstack("kill", "hdfs-namenode")
        produce(messages[200:])
        # Consumption stops either when staging reaches its cap or, if an upload fails first, while
        # the loop retries the same batch with the partitions paused; either way nothing is committed.
        wait_for(lambda: any(m in proc.log() for m in ("consumption paused until HDFS takes files",
                                                        "cannot place files in HDFS")), 90, "backpressure")
        behind = committed(f"{env.id}-hdfs")
        time.sleep(5)
        assert proc.alive()
        assert committed(f"{env.id}-hdfs") == behind, "nothing is committed while HDFS is down"
        devstack("up", "hdfs-namenode")
        all_committed(env, timeout=180)
    if "consumption paused until HDFS takes files" in proc.log():
        assert "consumption resumed" in proc.log()
    assert proc.terminate() == 0
    check_archive(env, produced)


class BlackHole:
    """Accepts TCP connections and never answers (a hung DataNode)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


class RedirectingProxy:
    """Forwards WebHDFS calls to the NameNode; while ``hijack`` is set, rewrites the 307
    Location of a create so the DataNode leg goes to ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.hijack = True
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", 9870, timeout=30)
                conn.request(self.command, self.path, body=body)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    if name.lower() == "location" and proxy.hijack:
                        value = re.sub(r"^http://[^/]+/", f"http://127.0.0.1:{target_port}/", value)
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_datanode_that_never_answers_times_out_and_retries(env: TestEnv, processes: list) -> None:
    hole = BlackHole()
    proxy = RedirectingProxy(hole.port)
    try:
        config, messages, produced = _prepare(env, 300, seed=6, bad=0, roll_age="1s", timeout="2s",
                                              retry_backoff="500ms", retry_backoff_max="1s",
                                              namenode=f"127.0.0.1:{proxy.port}")
        produce(messages)
        proc = start_uploader(env, config, processes)
        started = time.monotonic()
        wait_for(lambda: proc.log().count("DataNode leg") >= 3, 60, "three timed-out DataNode legs")
        # Each failed attempt took about the 2s timeout, not longer: three within ~3 x (2s + backoff).
        assert time.monotonic() - started < 45
        assert "no complete answer within the deadline" in proc.log()
        assert not any(c.offset for c in committed(f"{env.id}-hdfs").values())
        assert hole.held, "the DataNode leg really went to the black hole"
        proxy.hijack = False
        all_committed(env)
        assert proc.terminate() == 0
    finally:
        proxy.close()
        hole.close()
    check_archive(env, produced)
