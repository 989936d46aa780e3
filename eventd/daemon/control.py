"""``eventd status`` and ``eventd start|stop|restart ROLE``: talk to the running daemon's supervisord.

Exit codes of ``status`` (LSB-like, for monitoring scripts): 0 every enabled role runs;
1 something is unhealthy (a role not RUNNING, supervisord not answering); 3 the daemon is not
running. ``start``/``stop``/``restart``: 0 done; 1 failed (the reason is printed); 3 no daemon.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import yaml
from supervisor.xmlrpc import Faults

from eventd.config import Config
from eventd.daemon import runstate
from eventd.daemon.report import collect, format_text
from eventd.daemon.rpc import RpcFault, RpcUnavailable, Supervisor
from eventd.daemon.runstate import RunRecord
from eventd.daemon.supervisor_conf import enabled_roles
from eventd.errors import ConfigError

STATUS_OK, STATUS_UNHEALTHY, STATUS_NOT_RUNNING = 0, 1, 3


def status(cfg: Config, as_json: bool) -> int:
    return _print_status(cfg.daemon.run_dir, as_json)


def status_with_broken_config(path: str, error: ConfigError, as_json: bool) -> int:
    """``eventd status`` when the configuration file is invalid (say, after a reload was refused):
    the running daemon is still worth reporting on. Its run_dir is read leniently from the file."""
    run_dir = lenient_run_dir(path)
    print(f"eventd: the configuration file is invalid (the daemon keeps what it runs): {error}", file=sys.stderr)
    return _print_status(run_dir, as_json)


def lenient_run_dir(path: str) -> str:
    """``daemon.run_dir`` (or ``node.state_dir``/run, or the default) from a file that may be invalid."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        data = None
    data = data if isinstance(data, dict) else {}
    daemon, node = data.get("daemon"), data.get("node")
    run_dir = daemon.get("run_dir") if isinstance(daemon, dict) else None
    if not isinstance(run_dir, str) or not run_dir:
        state = node.get("state_dir") if isinstance(node, dict) else None
        run_dir = f"{state if isinstance(state, str) and state else '/var/lib/eventd'}/run"
    return run_dir if os.path.isabs(run_dir) else os.path.normpath(os.path.join(os.path.dirname(
        os.path.abspath(path)), run_dir))


def _print_status(run_dir: str, as_json: bool) -> int:
    report = collect(run_dir)
    print(json.dumps(report.as_dict(), indent=2, sort_keys=True) if as_json else format_text(report))
    if not report.daemon_running:
        return STATUS_NOT_RUNNING
    return STATUS_OK if report.healthy else STATUS_UNHEALTHY


def _fail(message: str, code: int = STATUS_UNHEALTHY) -> int:
    print(f"eventd: {message}", file=sys.stderr)
    return code


def _results(run_dir: str, action: str, results: list[dict[str, Any]]) -> int:
    """Print supervisor's per-process results (with the process's last error on failure);
    0 when every process succeeded."""
    if not results:
        print(f"nothing to {action}")
    code = STATUS_OK
    for r in results:
        name = f"{r['group']}:{r['name']}"
        if r.get("status") == Faults.SUCCESS:
            print(f"{name}: {action} ok")
            continue
        rec = RunRecord.read(run_dir, r["group"], int(str(r["name"]).rsplit("-", 1)[1]))
        why = f"; last error: {rec.error}" if rec and rec.error else ""
        print(f"{name}: {action} FAILED ({r.get('description')}){why}")
        code = STATUS_UNHEALTHY
    return code


def control(cfg: Config, command: str, role: str) -> int:
    """Start, stop or restart every process of ``role``; waits until done (stop: up to stop_timeout)."""
    run_dir = cfg.daemon.run_dir
    if not runstate.daemon_running(run_dir):
        return _fail(f"the daemon is not running (run_dir {run_dir})", STATUS_NOT_RUNNING)
    if role not in enabled_roles(cfg):
        return _fail(f"{role} is not enabled in {cfg.path}")
    rpc = Supervisor(cfg.daemon.socket_path)
    stop_wait, start_wait = cfg.daemon.stop_timeout + 15, cfg.daemon.start_seconds + 15
    try:
        code = STATUS_OK
        if command in ("stop", "restart"):
            runstate.set_held(run_dir, role, True)    # before stopping: the manager must not restart it
            code = _results(run_dir, "stop", rpc.stop_group(role, True, timeout=stop_wait))
        if command in ("start", "restart") and code == STATUS_OK:
            runstate.set_held(run_dir, role, False)
            code = _results(run_dir, "start", rpc.start_group(role, True, timeout=start_wait))
        return code
    except RpcFault as exc:
        return _fail(f"{command} {role}: {exc.faultString}")
    except RpcUnavailable as exc:
        return _fail(str(exc))
