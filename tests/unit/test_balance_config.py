"""The balance_aggregator section, table names, and the SQL templates rendered from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eventd.config import load_config
from eventd.errors import ConfigError
from eventd.roles.balance_aggregator.schema import Sql, create_statements, expected_columns

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "conf" / "eventd.yaml"


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "conf" / "schemas", tmp_path / "schemas")
    shutil.copytree(REPO / "conf" / "mariadb", tmp_path / "mariadb")
    return tmp_path


def write(conf_dir: Path, balance: str) -> Path:
    path = conf_dir / "eventd.yaml"
    others = "".join(f"{role}:\n  enabled: false\n" for role in ("collector", "clickhouse_loader", "hdfs_uploader"))
    path.write_text(f"events:\n  schema_dir: schemas\n{others}balance_aggregator:\n{balance}")
    return path


def test_defaults_match_the_sample() -> None:
    sample = load_config(str(SAMPLE)).balance_aggregator
    assert sample.window == 1.0 and sample.dedup_window == 100_000 and sample.day_boundary == "UTC"
    assert sample.tables.campaigns.spent == "spent" and sample.tables.offsets.table == "eventd_balance_offsets"
    assert sample.mariadb.password.value == "eventd" and sample.unknown_campaign == "dead_letter"


def test_names_can_point_at_an_existing_admin_database(conf_dir: Path) -> None:
    cfg = load_config(str(write(conf_dir, "  tables:\n    status_active: running\n"
                                "    campaigns: {table: adv_campaign, spent: money_spent}\n")))
    sql = Sql(cfg.balance_aggregator.tables)
    assert sql("UPDATE {campaigns} SET {campaigns.spent} = 0 WHERE {campaigns.status} = {status_active}") == \
        "UPDATE `adv_campaign` SET `money_spent` = 0 WHERE `status` = 'running'"
    create = create_statements(cfg)["campaigns"]
    assert "CREATE TABLE IF NOT EXISTS `adv_campaign`" in create and "`money_spent` DECIMAL(20,6)" in create
    assert "DEFAULT 'running'" in create


def test_every_template_renders_with_every_column_it_declares(conf_dir: Path) -> None:
    cfg = load_config(str(write(conf_dir, "  enabled: true\n")))
    statements = create_statements(cfg)
    for key, (table, columns) in expected_columns(cfg.balance_aggregator.tables).items():
        text = statements[key]
        assert f"CREATE TABLE IF NOT EXISTS `{table}`" in text and "{" not in text
        assert all(column in text for column in columns), key
    for money_table in ("campaigns", "campaign_days", "accounts"):
        assert "DECIMAL(20,6)" in statements[money_table] and "DOUBLE" not in statements[money_table]


@pytest.mark.parametrize("balance, key, reason", [
    ("  tables:\n    campaigns: {spent: 'spent; DROP'}\n", "balance_aggregator.tables.campaigns.spent",
     "is not a table or column name"),
    ("  day_boundary: Mars/Olympus\n", "balance_aggregator.day_boundary", "is not a known time zone"),
    ("  tables:\n    status_stopped: active\n", "balance_aggregator.tables.status_stopped", "must differ"),
    ("  tables:\n    campaigns: {budget: x}\n", "balance_aggregator.tables.campaigns.budget", "unknown key"),
    ("  unknown_campaign: ignore\n", "balance_aggregator.unknown_campaign", "is not allowed"),
    ("  mariadb:\n    database: 'a-b'\n", "balance_aggregator.mariadb.database", "is not a table or column name"),
])
def test_mistakes_are_reported_with_file_line_and_key(conf_dir: Path, balance: str, key: str, reason: str) -> None:
    path = write(conf_dir, balance)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert err.value.key == key and reason in err.value.reason and err.value.line is not None


def test_missing_sql_directory_is_a_clear_error(conf_dir: Path) -> None:
    cfg = load_config(str(write(conf_dir, "  mariadb:\n    sql_dir: nowhere\n")))
    with pytest.raises(Exception, match=r"cannot read .*nowhere/campaigns.sql"):
        create_statements(cfg)
