"""SIGHUP (``systemctl reload eventd``): re-read the configuration file and apply it.

- Invalid: the error (FILE:LINE: key: reason) is logged and kept for ``eventd status``; the
  running configuration stays, and so does every role process.
- Valid: snapshots and supervisord.conf are rewritten; supervisor compares the programs (the
  command line carries the role's config fingerprint, see :mod:`eventd.daemon.snapshot`), and
  only the roles whose effective configuration changed are stopped gracefully (all at once,
  within ``stop_timeout``), replaced and started. Removed roles stop; added roles start; the
  others are not touched. A role the operator stopped (``eventd stop``) is not started.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from eventd.config import Config, load_config
from eventd.daemon import runstate, snapshot
from eventd.daemon.main import STOP_GRACE
from eventd.daemon.rpc import RpcFault, RpcUnavailable
from eventd.daemon.supervisor_conf import enabled_roles
from eventd.errors import ConfigError
from eventd.logs import setup_logging

if TYPE_CHECKING:
    from eventd.daemon.main import Manager

log = logging.getLogger(__name__)


def _validate(mgr: "Manager") -> Config:
    new = load_config(mgr.cfg.path)
    if new.daemon.run_dir != mgr.run_dir:
        raise ConfigError(new.path, None, "daemon.run_dir",
                          f"changed from {mgr.run_dir} to {new.daemon.run_dir}: that takes a restart of eventd")
    return new


def _refuse(mgr: "Manager", reason: str) -> None:
    log.error("reload refused, the running configuration stays: %s", reason)
    mgr.state.reload_error = reason
    mgr.state.reloaded_at = time.time()


def _stop_and_remove(mgr: "Manager", groups: list[str]) -> bool:
    """Stop ``groups`` gracefully and remove them from supervisor; False if a stop signal came first."""
    for g in groups:
        try:
            mgr.rpc.stop_group(g)
        except RpcFault as exc:
            log.warning("stop %s: %s", g, exc.faultString)
    if not mgr.wait_stopped(groups, time.monotonic() + mgr.cfg.daemon.stop_timeout + STOP_GRACE):
        return False
    for g in groups:
        mgr.rpc.remove_group(g)
        for name in [n for n in mgr.policy.verdicts if n.startswith(f"{g}:")]:
            mgr.policy.forget(name)
    return True


def _add_and_start(mgr: "Manager", groups: list[str]) -> None:
    for g in groups:
        mgr.rpc.add_group(g)
        if not runstate.is_held(mgr.run_dir, g):
            mgr.rpc.start_group(g)


def reload(mgr: "Manager") -> None:
    """Apply the configuration file if it is valid; see the module docstring."""
    mgr.notifier.reloading()
    try:
        _apply(mgr)
    finally:
        mgr.notifier.ready()


def _apply(mgr: "Manager") -> None:
    try:
        new = _validate(mgr)
        keep = mgr.write_supervisor_conf(new)
    except (ConfigError, OSError) as exc:
        _refuse(mgr, str(exc))
        return
    try:
        added, changed, removed = mgr.rpc.reload()
        if not _stop_and_remove(mgr, changed + removed):
            log.warning("reload interrupted by a stop request")
            return
        _add_and_start(mgr, changed + added)
    except (RpcFault, RpcUnavailable) as exc:
        log.error("reload failed in supervisord: %s", exc)
        return
    snapshot.prune(os.path.join(mgr.run_dir, "config"), keep)
    mgr.cfg = new
    mgr.state.reload_error, mgr.state.reloaded_at = None, time.time()
    setup_logging("daemon", new.node.log_level)
    untouched = [r for r in enabled_roles(new) if r not in added and r not in changed]
    log.info("reloaded %s: restarted [%s], added [%s], removed [%s], untouched [%s]", new.path,
             ", ".join(changed), ", ".join(added), ", ".join(removed), ", ".join(untouched))
