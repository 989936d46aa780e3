"""The ``hdfs_uploader:`` section: the sample's values, defaults, and FILE:LINE errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eventd.config import load_config
from eventd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "conf" / "eventd.yaml"


def with_section(tmp_path: Path, old: str, new: str) -> Path:
    shutil.copytree(REPO / "conf" / "schemas", tmp_path / "schemas", dirs_exist_ok=True)
    text = SAMPLE.read_text()
    start = text.index("hdfs_uploader:")
    assert old in text[start:], old
    path = tmp_path / "eventd.yaml"
    path.write_text(text[:start] + text[start:].replace(old, new, 1))
    return path


def test_sample_section() -> None:
    h = load_config(str(SAMPLE)).hdfs_uploader
    assert (h.namenode_host, h.namenode_port, h.base_dir, h.codec) == ("127.0.0.1", 9870, "/eventd/events", "deflate")
    assert (h.roll_size, h.roll_age, h.staging_max_size) == (128 << 20, 600.0, 10 << 30)
    assert (h.timeout, h.retry_backoff, h.retry_backoff_max, h.upload_parallelism) == (30.0, 1.0, 60.0, 4)
    assert h.verify_records is True and h.block_size == 256 << 10 and h.min_upload_rate == 1 << 20


def test_defaults_when_the_section_is_empty(tmp_path: Path) -> None:
    shutil.copytree(REPO / "conf" / "schemas", tmp_path / "schemas")
    path = tmp_path / "eventd.yaml"
    path.write_text("node: {state_dir: /srv/eventd}\nevents: {schema_dir: schemas}\n"
                    "clickhouse_loader: {enabled: false}\n")
    h = load_config(str(path)).hdfs_uploader
    assert h.staging_dir == "/srv/eventd/hdfs/staging" and h.base_dir == "/eventd/events"


@pytest.mark.parametrize("old, new, message", [
    ("base_dir: /eventd/events", "base_dir: eventd/events", "must be an absolute HDFS path"),
    ("base_dir: /eventd/events", "base_dir: /", "must be an absolute HDFS path below /"),
    ("codec: deflate", "codec: lzo", r"not allowed \(expected one of: null, deflate, snappy, zstandard\)"),
    ("block_size: 256KiB", "block_size: 1GiB", "between 1KiB and 64MiB"),
    ("timeout: 30s", "timeout: 30", "not a duration"),
    ("retry_backoff_max: 1m", "retry_backoff_max: 100ms", "must not be shorter than retry_backoff"),
    ("upload_parallelism: 4", "upload_parallelism: 0", "out of range"),
    ("roll_age: 10m", "roll_age: 10m\n  roll_every: 5m", "unknown key"),
])
def test_errors_point_at_the_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = with_section(tmp_path, old, new)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(str(path))
    assert err.value.line is not None and err.value.key.startswith("hdfs_uploader.")
