"""Builds the page's snapshot (format in ``eventd/status_page/__init__.py``) from the daemon's status
report as plain data (``eventd.daemon.report.Report.as_dict()``: one entry per process), so the
daemon can serve the page with::

    serve_status_page(host, port, lambda: snapshot_from_report(
        collect(cfg.daemon.run_dir).as_dict(), read_recent_alerts(cfg.monitor.state_file)))

Processes are grouped per role in the order they come: a role is healthy when all its processes
are; its rate and lag are the sums over them; its state is the first unhealthy process's state.
"""

from __future__ import annotations

import socket
from typing import Any


def snapshot_from_report(report: dict[str, Any], alerts: list[dict[str, Any]] | None = None,
                         node: str | None = None) -> dict[str, Any]:
    """The snapshot; ``node`` defaults to this machine's name."""
    roles: dict[str, list[dict[str, Any]]] = {}
    for p in report.get("processes", []):
        roles.setdefault(str(p.get("role")), []).append(p)
    return {"healthy": bool(report.get("healthy")), "node": node or socket.gethostname(),
            "roles": [_role(name, procs) for name, procs in roles.items()], "alerts": alerts or [],
            "problems": list(report.get("problems", []))}


def _role(name: str, procs: list[dict[str, Any]]) -> dict[str, Any]:
    sick = [p for p in procs if not p.get("healthy")]
    uptimes = [p["uptime"] for p in procs if p.get("uptime") is not None]
    errors = [p.get("note") or p.get("last_error") for p in sick + procs if p.get("note") or p.get("last_error")]
    return {"name": name, "healthy": not sick, "state": (sick or procs)[0].get("state", ""),
            "processes": len(procs), "running": sum(1 for p in procs if p.get("healthy")),
            "restarts": sum(int(p.get("restarts") or 0) for p in procs),
            "uptime": min(uptimes) if uptimes else None,
            "rate": _sum(p.get("events_per_second") for p in procs),
            "lag": _sum(p.get("kafka_lag") for p in procs),
            "last_error": errors[0] if errors else ""}


def _sum(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
