"""The read-only status page on ``daemon.status_listen``: ``GET /status`` is ``eventd status --json``
(HTTP 200 when healthy, 503 when not), ``GET /`` the same as text. For load balancers and
monitoring that prefer HTTP to running a command."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eventd.config import Config
from eventd.daemon.report import collect, format_text

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: "StatusPage"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path not in ("/", "/status"):
            self.send_error(404, "try /status (JSON) or / (text)")
            return
        report = collect(self.server.cfg.daemon.run_dir)
        if path == "/status":
            body, kind = json.dumps(report.as_dict(), indent=1, sort_keys=True), "application/json"
        else:
            body, kind = format_text(report) + "\n", "text/plain; charset=utf-8"
        data = body.encode()
        self.send_response(200 if report.healthy else 503)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:   # noqa: A002
        log.debug("status page: " + format, *args)


class StatusPage(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cfg: Config) -> None:
        super().__init__((cfg.daemon.status_host, cfg.daemon.status_port), _Handler)
        self.cfg = cfg

    @classmethod
    def start(cls, cfg: Config) -> "StatusPage | None":
        """Serve in a thread; a port in use is logged, not fatal (the page is optional)."""
        try:
            page = cls(cfg)
        except OSError as exc:
            log.warning("status page on %s:%d not started: %s", cfg.daemon.status_host, cfg.daemon.status_port, exc)
            return None
        threading.Thread(target=page.serve_forever, name="status-page", daemon=True).start()
        log.info("status page on http://%s:%d/status", cfg.daemon.status_host, cfg.daemon.status_port)
        return page

    def close(self) -> None:
        self.shutdown()
        self.server_close()
