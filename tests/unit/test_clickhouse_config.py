"""The clickhouse_loader section: the column mapping and statistics are configuration, and
every mistake in them is reported as FILE:LINE: key: reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from eventd.config import Config, load_config
from eventd.config.clickhouse import DEFAULT_COLUMNS
from eventd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "conf" / "eventd.yaml"


def config(tmp_path: Path, **loader: Any) -> Config:
    data = yaml.safe_load(SAMPLE.read_text())
    data["events"]["schema_dir"] = str(REPO / "conf" / "schemas")
    data["clickhouse_loader"].update(loader)
    path = tmp_path / "eventd.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(str(path))


def test_sample_mapping_is_the_default_mapping() -> None:
    lc = load_config(str(SAMPLE)).clickhouse_loader
    assert lc.columns == DEFAULT_COLUMNS
    assert lc.ddl_dir == str(REPO / "conf" / "clickhouse")
    assert lc.order_by == ("campaign_id", "type", "time")
    assert lc.stats.dimensions == ("campaign_id", "site_id", "zone_id", "country", "device")
    assert lc.stats.sums == ("cost_micros", "revenue_micros", "bid_micros", "value_micros")
    assert (lc.max_rows, lc.max_age, lc.duplicate_id_window) == (100_000, 1.0, 100_000)
    dest = lc.destinations[0]
    assert (dest.zookeeper_path, dest.replica) == ("/clickhouse/tables/{shard}", "{replica}")


def test_a_new_column_is_configuration(tmp_path: Path) -> None:
    cfg = config(tmp_path, columns=[{"column": "campaign_id", "type": "UInt32"},
                                    {"column": "spend", "field": "cost", "type": "Int64", "money": True},
                                    {"column": "browser", "type": "String"}],
                 stats={"dimensions": ["campaign_id", "browser"]})
    lc = cfg.clickhouse_loader
    assert [(c.column, c.field, c.type, c.money) for c in lc.columns] == [
        ("campaign_id", "campaign_id", "UInt32", False), ("spend", "cost", "Int64", True),
        ("browser", "browser", "String", False)]
    assert lc.stats.sums == ("spend",)          # default: the money columns


@pytest.mark.parametrize("loader,message", [
    ({"columns": [{"column": "x", "type": "Float64", "money": True}]},
     "columns[0].type: a money column holds integer micro-units"),
    ({"columns": [{"column": "x", "type": "Decimal"}]}, "columns[0].type: 'Decimal' is not allowed"),
    ({"columns": [{"column": "time", "type": "UInt64"}]}, "columns[0].column: 'time' is a column the loader fills"),
    ({"columns": [{"column": "Bad-Name", "type": "String"}]}, "is not a column name"),
    ({"columns": [{"column": "a", "type": "String"}, {"column": "a", "type": "String"}]}, "mapped twice"),
    ({"columns": [{"column": "a", "type": "String", "typo": 1}]}, "columns[0].typo: unknown key"),
    ({"order_by": ["campaign_id", "nope"]}, "order_by: nope: not a column of the events table"),
    ({"stats": {"dimensions": ["campaign_id", "nope"]}}, "stats.dimensions: nope: not a column"),
    ({"stats": {"sums": ["country"]}}, "stats.sums: country: not a column"),
    ({"stats": {"sums": ["cost_micros"], "dimensions": ["cost_micros"]}}, "both a dimension and a sum"),
    ({"max_rows": 2_000_000}, "max_rows: 2000000 is out of range"),
    ({"destinations": [{"name": "a", "zookeeper_path": "/x/"}]}, "is not a ZooKeeper path"),
    ({"destinations": [{"name": "a", "database": "my-db"}]}, "is not a column name"),
])
def test_mistakes_name_the_key_and_the_reason(tmp_path: Path, loader: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config(tmp_path, **loader)
    assert message in str(exc.value)
    assert str(exc.value).startswith(f"{tmp_path / 'eventd.yaml'}:")
