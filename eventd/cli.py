"""The ``eventd`` command line. Each sub-command is a short function; the work is elsewhere."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

import yaml

from eventd import __version__
from eventd.config import Config, config_path, load_config, printable
from eventd.errors import EXIT_CONFIG, EXIT_OK, EXIT_TEMPORARY, ConfigError, EventdError
from eventd.roles import ROLE_MODULES

Command = Callable[[argparse.Namespace, Config], int]


def _check_config(args: argparse.Namespace, cfg: Config) -> int:
    print(f"# {cfg.path}: OK")
    print(yaml.safe_dump(printable(cfg), sort_keys=False, default_flow_style=False), end="")
    return EXIT_OK


def _setup(args: argparse.Namespace, cfg: Config) -> int:
    from eventd.logs import setup_logging
    from eventd.provision import provision
    setup_logging("setup", cfg.node.log_level)
    changes = provision(cfg)
    print("\n".join(changes) if changes else "nothing to change: everything exists")
    return EXIT_OK


def _role(args: argparse.Namespace, cfg: Config) -> int:
    from eventd.roles.base import run_role
    return run_role(cfg, args.name, args.slot)


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from eventd.daemon.main import run_daemon
    return run_daemon(cfg)


def _status(args: argparse.Namespace, cfg: Config) -> int:
    from eventd.daemon.control import status
    return status(cfg, as_json=args.json)


def _control(args: argparse.Namespace, cfg: Config) -> int:
    from eventd.daemon.control import control
    return control(cfg, args.command, args.name)


def _replay(args: argparse.Namespace, cfg: Config) -> int:
    from eventd.replay.command import replay
    return replay(cfg, args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eventd", description="Ad-platform event pipeline: collector → Kafka → "
                                "ClickHouse, MariaDB balances, HDFS archive.")
    p.add_argument("--version", action="version", version=f"eventd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, func: Command, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("-c", "--config", help="configuration file (default: $EVENTD_CONFIG or /etc/eventd/eventd.yaml)")
        sp.set_defaults(func=func)
        return sp

    cmd("check-config", _check_config, "validate the configuration and print it with secrets masked")
    cmd("setup", _setup, "create topics, tables, schema and directories (idempotent)")
    r = cmd("role", _role, "run one role in the foreground")
    r.add_argument("name", choices=list(ROLE_MODULES))
    r.add_argument("--slot", type=int, default=0, help="process number within the role (set by the daemon)")
    cmd("run", _run, "run the daemon: every enabled role, supervised")
    s = cmd("status", _status, "show each role's state; non-zero exit when something is unhealthy")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    for name in ("start", "stop", "restart"):
        c = cmd(name, _control, f"{name} one role of the running daemon")
        c.add_argument("name", choices=list(ROLE_MODULES))
    rp = cmd("replay", _replay, "ingest legacy JSON event files exactly as live events")
    rp.add_argument("files", nargs="+", metavar="FILE", help="NDJSON files, .gz, or - for stdin")
    rp.add_argument("--to", choices=["kafka", "clickhouse", "balances", "hdfs"], default="kafka")
    rp.add_argument("--rejects", metavar="PATH", help="write rejected lines here with line number and reason")
    rp.add_argument("--dry-run", action="store_true", help="validate and count without writing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(config_path(args.config))
    except ConfigError as exc:
        if args.command == "status":   # a refused reload must not blind the operator to the running daemon
            from eventd.daemon.control import status_with_broken_config
            return status_with_broken_config(config_path(args.config), exc, args.json)
        print(f"eventd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return args.func(args, cfg)
    except EventdError as exc:
        logging.getLogger("eventd").debug("failed", exc_info=True)
        print(f"eventd {args.command}: {exc}", file=sys.stderr)
        return EXIT_TEMPORARY
    except KeyboardInterrupt:
        return 130
