"""The configuration: the sample is valid; every broken copy fails with FILE:LINE: key: reason."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eventd.config import load_config
from eventd.config.units import duration, size
from eventd.errors import EXIT_CONFIG, ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "conf" / "eventd.yaml"


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "conf" / "schemas", tmp_path / "schemas")
    return tmp_path


def broken(conf_dir: Path, old: str, new: str) -> Path:
    text = SAMPLE.read_text()
    assert old in text, old
    path = conf_dir / "eventd.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_sample_config_is_valid() -> None:
    cfg = load_config(str(SAMPLE))
    assert cfg.kafka.bootstrap_servers == ("127.0.0.1:9092",)
    assert cfg.collector.queue.fsync == "interval"
    assert cfg.events.types["impression"].key == "campaign_id"


def test_unknown_key_names_file_line_and_key(conf_dir: Path) -> None:
    path = broken(conf_dir, "  unknown_types: accept", "  unknwon_types: accept")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    assert str(exc.value).startswith(f"{path}:{line_of(path, 'unknwon_types')}: events.unknwon_types: unknown key")


def test_bad_duration_names_the_expected_form(conf_dir: Path) -> None:
    path = broken(conf_dir, "linger: 20ms", "linger: 20")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{line_of(path, 'linger: 20')}: kafka.producer.linger: ")
    assert "expected a number with a unit" in msg


def test_missing_required_destination_name(conf_dir: Path) -> None:
    path = broken(conf_dir, "    - name: local\n", "    - comment: x\n")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    assert "clickhouse_loader.destinations[0].name: missing required value" in str(exc.value)


def test_wrong_type_and_impossible_combination(conf_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"kafka.topics.partitions: 'six' is not an integer"):
        load_config(str(broken(conf_dir, "partitions: 6              #", "partitions: six  #")))
    with pytest.raises(ConfigError, match="heartbeat_interval: must be shorter than session_timeout"):
        load_config(str(broken(conf_dir, "heartbeat_interval: 3s", "heartbeat_interval: 30s")))


def test_missing_section_is_reported(conf_dir: Path) -> None:
    text = SAMPLE.read_text()
    start = text.index("clickhouse_loader:")
    end = text.index("balance_aggregator:")
    path = conf_dir / "eventd.yaml"
    path.write_text(text[:start] + text[end:])
    with pytest.raises(ConfigError, match="clickhouse_loader.destinations: the loader is enabled but no destination"):
        load_config(str(path))


def test_yaml_syntax_error_has_a_line(conf_dir: Path) -> None:
    path = broken(conf_dir, "node:\n", "node:\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: invalid YAML"):
        load_config(str(path))


def test_secret_from_env_and_file_is_masked(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (conf_dir / "db.pass").write_text("s3cret\n")
    path = broken(conf_dir, "    password: eventd\n", "    password_file: db.pass\n")
    cfg = load_config(str(path))
    assert cfg.balance_aggregator.mariadb.password.value == "s3cret"
    assert "s3cret" not in repr(cfg)
    path = broken(conf_dir, "    password: eventd\n", "    password_env: EVENTD_TEST_PW\n")
    with pytest.raises(ConfigError, match="environment variable EVENTD_TEST_PW is not set"):
        load_config(str(path))
    monkeypatch.setenv("EVENTD_TEST_PW", "fromenv")
    assert load_config(str(path)).balance_aggregator.mariadb.password.value == "fromenv"


def test_check_config_command(conf_dir: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "eventd", "check-config", "-c", str(SAMPLE)],
                        capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "password: '*** (from yaml)'" in ok.stdout and "eventd\n" not in ok.stdout.split("password")[1][:30]
    path = broken(conf_dir, "max_rows: 100000", "max_rowz: 100000")
    bad = subprocess.run([sys.executable, "-m", "eventd", "check-config", "-c", str(path)],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == EXIT_CONFIG
    assert f"{path}:{line_of(path, 'max_rowz')}: clickhouse_loader.max_rowz: unknown key" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("text,seconds", [("250ms", 0.25), ("5s", 5), ("10m", 600), ("1h", 3600), ("1.5s", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text,n", [("64MiB", 64 << 20), ("1GiB", 1 << 30), ("512KB", 512_000), (4096, 4096)])
def test_sizes(text: str | int, n: int) -> None:
    assert size(text) == n


@pytest.mark.parametrize("bad", ["5", "5 sec", "-1s", 5, True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        duration(bad)
