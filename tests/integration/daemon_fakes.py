"""Fakes for the daemon's supervision tests: the real manager and the real supervisord run real
processes, but each role process runs a scripted fake instead of the role.

- ``python daemon_fakes.py daemon CONFIG`` (:class:`FakeDaemon` starts it): ``eventd run`` whose role processes start through
  ``fakepy`` (a script next to CONFIG written by :func:`write_fake_python`).
- ``fakepy -m eventd.daemon.child ROLE --slot N --snapshot FILE``: the real child entry point
  (run records, exit codes) around a fake role module whose behaviour is read at start from
  ``<config dir>/behaviour/<role>`` (default ``run``):

  ``run``            count one event per 10 ms in eventd_events_out_total until stopped
  ``cannot_start``   raise CannotStart("wrong password for eventd@127.0.0.1:3306 (fake)")
  ``crash_after N``  run N seconds, then raise RuntimeError
  ``slow_stop N``    on SIGTERM, take N seconds to stop (a slow flush)
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from types import SimpleNamespace
import yaml
from daemon_process import DaemonProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def write_fake_python(directory: Path) -> Path:
    path = directory / "fakepy"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'daemon_fakes.py'} child \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def set_behaviour(config_dir: Path, role: str, behaviour: str) -> None:
    (config_dir / "behaviour").mkdir(exist_ok=True)
    (config_dir / "behaviour" / role).write_text(behaviour)


def _behaviour(cfg, role: str) -> list[str]:  # type: ignore[no-untyped-def]
    path = Path(cfg.path).parent / "behaviour" / role
    return path.read_text().split() if path.exists() else ["run"]


def _fake_main(ctx) -> None:  # type: ignore[no-untyped-def]
    from eventd import metrics
    from eventd.errors import CannotStart
    what = _behaviour(ctx.config, ctx.role)
    if what[0] == "cannot_start":
        raise CannotStart("wrong password for eventd@127.0.0.1:3306 (fake)")
    end = time.monotonic() + float(what[1]) if what[0] == "crash_after" else None
    while not ctx.stop.wait(0.01):
        metrics.EVENTS_OUT.labels(ctx.role, "fake").inc()
        if end is not None and time.monotonic() > end:
            raise RuntimeError("fake crash")
    if what[0] == "slow_stop":
        time.sleep(float(what[1]))


def child(argv: list[str]) -> int:
    assert argv[:2] == ["-m", "eventd.daemon.child"], argv
    import eventd.roles
    from eventd.daemon import child as child_mod
    fake = SimpleNamespace(main=_fake_main)
    eventd.roles.role_module = lambda name: fake          # what run_role imports
    child_mod.role_module = lambda name: fake             # the import check
    return child_mod.main(argv[2:])


def daemon(config: str) -> int:
    from eventd.config import load_config
    from eventd.daemon.main import run_daemon
    cfg = load_config(config)
    return run_daemon(cfg, python=str(write_fake_python(Path(config).parent)))


class FakeDaemon(DaemonProcess):
    """A daemon under test (``daemon_fakes.py daemon CONFIG``) whose roles are the scripted fakes."""

    def __init__(self, config: Path) -> None:
        self.settings = yaml.safe_load(config.read_text())
        super().__init__([sys.executable, str(HERE / "daemon_fakes.py"), "daemon", str(config)], config,
                         config.parent / "daemon.log", b"daemon_fakes.py")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    if sys.argv[1] == "child":
        raise SystemExit(child(sys.argv[2:]))
    raise SystemExit(daemon(sys.argv[2]))
