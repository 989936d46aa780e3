"""The daemon serves the status page (``eventd/status_page``: HTML with live charts, ``GET
/status.json``, ``GET /healthz``) on ``daemon.status_listen``, fed by the same report as
``eventd status`` plus the monitor's recent alerts."""

from __future__ import annotations

import logging
from typing import Any

from eventd.config import Config
from eventd.daemon.report import collect
from eventd.status_page import StatusServer, serve_status_page, snapshot_from_report

log = logging.getLogger(__name__)


def _snapshot(cfg: Config) -> dict[str, Any]:
    from eventd.roles.monitor.state import read_recent_alerts
    return snapshot_from_report(collect(cfg.daemon.run_dir).as_dict(), read_recent_alerts(cfg.monitor.state_file),
                                cfg.node.host)


def start_status_page(cfg: Config) -> StatusServer | None:
    """Serve in a thread; a port in use is logged, not fatal (the page is optional)."""
    try:
        return serve_status_page(cfg.daemon.status_host, cfg.daemon.status_port, lambda: _snapshot(cfg))
    except OSError as exc:
        log.warning("status page on %s:%d not started: %s", cfg.daemon.status_host, cfg.daemon.status_port, exc)
        return None
