"""Renders ``run_dir/supervisord.conf`` from the eventd configuration: one ``[program:<role>]`` per
enabled role with ``numprocs`` = the role's ``processes``.

Choices, and why:

- ``autostart=false``, ``autorestart=false``: the manager (:mod:`eventd.daemon.main`) starts the
  roles and decides about restarts (:mod:`eventd.daemon.policy`), because supervisor restarts a
  crashed process at once (no backoff) and cannot tell "cannot start" exit codes from crashes.
  supervisor still does what it does well: spawn, ``startsecs``/``startretries`` with its own
  BACKOFF → FATAL for processes that die right after start, graceful stop with ``stopwaitsecs``
  then SIGKILL, reaping, and the XML-RPC interface.
- Output: the role's stderr (its log) is merged into stdout and written to supervisord's
  ``/dev/stderr``, which is a pipe to the manager, which copies it to its own stderr (journald
  under systemd). supervisord cannot open ``/dev/stderr`` itself when that is journald's socket.
- The control socket is ``run_dir/supervisor.sock`` (mode 0770: the eventd user and group).

Every value is escaped for supervisor's ``%(name)s`` expansion and its shell-like splitting.
"""

from __future__ import annotations

import os
import shlex
import sys

import eventd
from eventd.config import Config
from eventd.config.daemon import SOCKET_NAME
from eventd.daemon.snapshot import section_of
from eventd.roles import ROLE_MODULES

CONF_NAME = "supervisord.conf"


def enabled_roles(cfg: Config) -> list[str]:
    """Enabled roles in the fixed order of :data:`eventd.roles.ROLE_MODULES`."""
    return [r for r in ROLE_MODULES if section_of(cfg, r).role.enabled]


def _pct(value: str) -> str:
    """Escape ``%`` for supervisor's string expansion."""
    return value.replace("%", "%%")


def _env_value(value: str) -> str:
    if any(c in value for c in '"\n,'):
        raise ValueError(f"cannot pass {value!r} to a role process (contains a quote, comma or newline)")
    return f'"{_pct(value)}"'


def python_path() -> str:
    """PYTHONPATH for role processes: the directory holding the ``eventd`` package this daemon runs
    (so a source checkout works like an install), then whatever PYTHONPATH already was."""
    own = os.path.dirname(os.path.dirname(os.path.abspath(eventd.__file__)))
    rest = os.environ.get("PYTHONPATH")
    return f"{own}:{rest}" if rest else own


def _program(cfg: Config, role: str, snapshot: str, python: str, pythonpath: str) -> str:
    d = cfg.daemon
    command = " ".join(shlex.quote(_pct(a)) for a in (python, "-m", "eventd.daemon.child", role)) + \
        " --slot %(process_num)d --snapshot " + shlex.quote(_pct(snapshot))
    return "\n".join([
        f"[program:{role}]",
        f"command={command}",
        "process_name=%(program_name)s-%(process_num)d",
        f"numprocs={section_of(cfg, role).role.processes}",
        "numprocs_start=0",
        "autostart=false",
        "autorestart=false",
        f"startsecs={d.start_seconds}",
        f"startretries={d.start_retries}",
        "exitcodes=0",
        "stopsignal=TERM",
        f"stopwaitsecs={d.stop_timeout}",
        "redirect_stderr=true",
        "stdout_logfile=/dev/stderr",
        "stdout_logfile_maxbytes=0",
        f"environment=PYTHONPATH={_env_value(pythonpath)},PYTHONUNBUFFERED=\"1\"",
        "",
    ])


def render(cfg: Config, snapshots: dict[str, str], python: str = sys.executable,
           pythonpath: str | None = None) -> str:
    """The text of supervisord.conf; ``snapshots`` maps each enabled role to its snapshot file."""
    run = cfg.daemon.run_dir
    sock = os.path.join(run, SOCKET_NAME)
    head = "\n".join([
        f"; Written by `eventd run` from {cfg.path}. Do not edit: it is rewritten at start and reload.",
        f"; Inspect with: supervisorctl -c {os.path.join(run, CONF_NAME)} status",
        "[supervisord]",
        "nodaemon=true",
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        f"pidfile={_pct(os.path.join(run, 'supervisord.pid'))}",
        f"childlogdir={_pct(run)}",
        "identifier=eventd",
        "umask=027",
        "",
        "[unix_http_server]",
        f"file={_pct(sock)}",
        "chmod=0770",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_pct(sock)}",
        "",
    ])
    path = pythonpath if pythonpath is not None else python_path()
    programs = [_program(cfg, role, snapshots[role], python, path) for role in enabled_roles(cfg)]
    return head + "\n" + "\n".join(programs)
