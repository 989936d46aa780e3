"""The daemon's configuration: its section, each role's fingerprint, the rendered supervisord.conf."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from eventd.config import load_config
from eventd.daemon import snapshot
from eventd.daemon.supervisor_conf import enabled_roles, render
from eventd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SALT = b"0123456789abcdef"


def config(tmp: Path, **sections: dict) -> Path:
    data = {"events": {"schema_dir": "schemas"}, "daemon": {"run_dir": str(tmp / "run")},
            "clickhouse_loader": {"destinations": [{"name": "a", "hosts": ["127.0.0.1:9000"], "database": "x"}]}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    if not (tmp / "schemas").exists():
        shutil.copytree(REPO / "conf" / "schemas", tmp / "schemas")
    path = tmp / "eventd.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_sample_daemon_section_defaults() -> None:
    d = load_config(str(REPO / "conf" / "eventd.yaml")).daemon
    assert (d.stop_timeout, d.start_seconds, d.start_retries) == (30, 5, 5)
    assert (d.restart_backoff, d.restart_backoff_max) == (1.0, 60.0)
    assert d.run_dir == "/var/lib/eventd/run" and d.socket_path == "/var/lib/eventd/run/supervisor.sock"
    assert (d.status_host, d.status_port) == ("127.0.0.1", 8790)


def test_durations_round_up_to_whole_seconds(tmp_path: Path) -> None:
    d = load_config(str(config(tmp_path, daemon={"stop_timeout": "1500ms", "start_seconds": "1s"}))).daemon
    assert d.stop_timeout == 2 and d.start_seconds == 1


@pytest.mark.parametrize("daemon, key, words", [
    ({"stop_timeout": "0s"}, "daemon.stop_timeout", "out of range"),
    ({"stop_timeout": "30"}, "daemon.stop_timeout", "with a unit"),
    ({"restart_backoff": "10s", "restart_backoff_max": "5s"}, "daemon.restart_backoff_max", "must not be shorter"),
    ({"run_dir": "/" + "x" * 100}, "daemon.run_dir", "unix socket limit"),
    ({"stop_timout": "5s"}, "daemon.stop_timout", "unknown key"),
])
def test_bad_daemon_values_are_refused_with_the_key(tmp_path: Path, daemon: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(str(config(tmp_path, daemon=daemon)))
    assert f": {key}: " in str(exc.value) and words in str(exc.value)


def fingerprints(path: Path) -> dict[str, str]:
    cfg = load_config(str(path))
    return {r: snapshot.fingerprint(cfg, r, SALT) for r in enabled_roles(cfg)}


def test_fingerprint_changes_only_for_roles_that_read_the_change(tmp_path: Path) -> None:
    base = fingerprints(config(tmp_path))
    assert base == fingerprints(config(tmp_path))                               # stable
    loader = fingerprints(config(tmp_path, clickhouse_loader={"max_rows": 5}))
    assert {r for r in base if base[r] != loader[r]} == {"clickhouse-loader"}
    shared = fingerprints(config(tmp_path, kafka={"client_id": "other"}))
    assert all(base[r] != shared[r] for r in base)                              # everyone reads kafka
    daemon_only = fingerprints(config(tmp_path, daemon={"stop_timeout": "7s"}))
    assert daemon_only == base        # supervisor sees stopwaitsecs change in the program itself


def test_fingerprint_follows_metrics_ports_schemas_and_secrets(tmp_path: Path) -> None:
    base = fingerprints(config(tmp_path))
    more = fingerprints(config(tmp_path, collector={"processes": 3}))
    # The collector's process count shifts the metrics ports of every role after it.
    assert {r for r in base if base[r] != more[r]} == {"collector", "clickhouse-loader", "balance-aggregator",
                                                       "hdfs-uploader"}
    secret = fingerprints(config(tmp_path, balance_aggregator={"mariadb": {"password": "changed"}}))
    assert {r for r in base if base[r] != secret[r]} == {"balance-aggregator"}
    (tmp_path / "schemas" / "click.v2.avsc").write_text((tmp_path / "schemas" / "click.v1.avsc").read_text())
    schemas = fingerprints(config(tmp_path))
    assert all(base[r] != schemas[r] for r in base)


def test_fingerprint_is_salted(tmp_path: Path) -> None:
    cfg = load_config(str(config(tmp_path)))
    assert snapshot.fingerprint(cfg, "collector", SALT) != snapshot.fingerprint(cfg, "collector", b"x" * 16)


def test_snapshot_round_trip_is_private(tmp_path: Path) -> None:
    cfg = load_config(str(config(tmp_path, balance_aggregator={"mariadb": {"password": "s3cret"}})))
    path = str(tmp_path / "snap.pickle")
    snapshot.write_snapshot(cfg, path)
    assert (tmp_path / "snap.pickle").stat().st_mode & 0o077 == 0
    assert snapshot.load_snapshot(path) == cfg
    (tmp_path / "bad.pickle").write_bytes(b"\x80\x04N.")      # pickled None
    with pytest.raises(ValueError):
        snapshot.load_snapshot(str(tmp_path / "bad.pickle"))


def test_rendered_conf_is_what_supervisor_reads(tmp_path: Path) -> None:
    from supervisor.options import ServerOptions
    cfg = load_config(str(config(tmp_path, collector={"processes": 2}, hdfs_uploader={"enabled": False},
                                 daemon={"stop_timeout": "12s", "start_seconds": "3s", "start_retries": 2})))
    snaps = {r: f"/snap/{r}.pickle" for r in enabled_roles(cfg)}
    conf = tmp_path / "supervisord.conf"
    (tmp_path / "run").mkdir()
    conf.write_text(render(cfg, snaps, python="/opt/eventd/bin/python", pythonpath="/src"))
    opts = ServerOptions()
    opts.configfile = str(conf)
    opts.process_config(do_usage=False)
    groups = {g.name: g for g in opts.process_group_configs}
    assert set(groups) == {"collector", "clickhouse-loader", "balance-aggregator"}    # hdfs disabled
    procs = {p.name: p for g in groups.values() for p in g.process_configs}
    assert set(procs) == {"collector-0", "collector-1", "clickhouse-loader-0", "balance-aggregator-0"}
    c1 = procs["collector-1"]
    assert c1.command == ("/opt/eventd/bin/python -m eventd.daemon.child collector --slot 1 "
                          "--snapshot /snap/collector.pickle")
    assert (c1.startsecs, c1.startretries, c1.stopwaitsecs, c1.exitcodes) == (3, 2, 12, [0])
    assert c1.autostart is False and c1.autorestart is False and c1.redirect_stderr is True
    assert c1.stdout_logfile == "/dev/stderr" and c1.environment["PYTHONPATH"] == "/src"
    assert opts.configroot.supervisord.server_configs[0]["file"] == str(tmp_path / "run" / "supervisor.sock")


def test_rendered_conf_escapes_percent_signs(tmp_path: Path) -> None:
    from supervisor.options import ServerOptions
    cfg = load_config(str(config(tmp_path)))
    conf = tmp_path / "supervisord.conf"
    (tmp_path / "run").mkdir()
    conf.write_text(render(cfg, {r: f"/snap/100%/{r}.pickle" for r in enabled_roles(cfg)},
                           python="/usr/bin/python3", pythonpath="/a%b"))
    opts = ServerOptions()
    opts.configfile = str(conf)
    opts.process_config(do_usage=False)
    p = next(g for g in opts.process_group_configs if g.name == "collector").process_configs[0]
    assert p.command.endswith("--snapshot /snap/100%/collector.pickle") and p.environment["PYTHONPATH"] == "/a%b"
