"""Table and column names, the SQL files of ``conf/mariadb/``, ``eventd setup`` and the start-up check.

Every statement eventd sends is a template with ``{campaigns}`` (the table) and
``{campaigns.spent}`` (a column) placeholders, rendered once from the configured names, so
eventd can run against an existing admin database whose names differ from ours.
"""

from __future__ import annotations

import os
from typing import Any

from pymysql.converters import escape_string

from eventd.config import Config
from eventd.config.balances import TABLES, TableNames, Tables
from eventd.errors import EventdError

# Columns of eventd's own tables (not renameable: eventd alone reads and writes them).
OWN_COLUMNS = {"offsets": ("topic", "part", "next_offset", "updated_at", "updated_by"),
               "outbox": ("event_id", "topic", "msg_key", "value", "headers", "created_at")}
# Budget stops eventd makes; only campaigns stopped for these reasons accumulate overspend.
REASON_TOTAL, REASON_DAILY = "total_budget", "daily_budget"


class SchemaMismatch(EventdError):
    """A configured table or column does not exist (or the SQL files are missing)."""


def quote(name: str) -> str:
    """A back-quoted identifier (names are validated by the config: no back-quotes inside)."""
    return f"`{name}`"


def literal(value: str) -> str:
    return f"'{escape_string(value)}'"


class _Quoted:
    """``{t}`` renders the table's name, ``{t.col}`` a column's, both back-quoted."""

    def __init__(self, names: TableNames) -> None:
        self._names = names

    def __format__(self, spec: str) -> str:
        return quote(self._names.table)

    def __getattr__(self, column: str) -> str:
        return quote(getattr(self._names, column))


class Sql:
    """Renders statement templates with the configured names."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._values: dict[str, Any] = {key: _Quoted(getattr(tables, key)) for key in TABLES}
        self._values.update(status_active=literal(tables.status_active),
                            status_stopped=literal(tables.status_stopped),
                            reason_total=literal(REASON_TOTAL), reason_daily=literal(REASON_DAILY))

    def __call__(self, template: str) -> str:
        return template.format_map(self._values)


def sql_dir(cfg: Config) -> str:
    """``balance_aggregator.mariadb.sql_dir``, by default ``mariadb/`` next to the Avro schemas."""
    configured = cfg.balance_aggregator.mariadb.sql_dir
    return configured or os.path.join(os.path.dirname(cfg.events.schema_dir.rstrip("/")), "mariadb")


def create_statements(cfg: Config) -> dict[str, str]:
    """Table key → its rendered ``CREATE TABLE IF NOT EXISTS`` from ``<sql_dir>/<key>.sql``."""
    directory, render = sql_dir(cfg), Sql(cfg.balance_aggregator.tables)
    out = {}
    for key in TABLES:
        path = os.path.join(directory, f"{key}.sql")
        try:
            with open(path, encoding="utf-8") as fh:
                out[key] = render(fh.read()).strip().rstrip(";")
        except OSError as exc:
            raise SchemaMismatch(f"cannot read {path}: {exc.strerror} (balance_aggregator.mariadb.sql_dir)") from None
    return out


def expected_columns(tables: Tables) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Table key → (table name, the column names eventd uses)."""
    out = {}
    for key in TABLES:
        names: TableNames = getattr(tables, key)
        out[key] = (names.table, tuple(names.columns.values()) or OWN_COLUMNS[key])
    return out


def missing_columns(cursor: Any, database: str, tables: Tables) -> list[str]:
    """``table`` or ``table.column`` for everything eventd needs that ``database`` lacks."""
    cursor.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
                   (database,))
    present: dict[str, set[str]] = {}
    for table, column in cursor.fetchall():
        present.setdefault(table.lower(), set()).add(column.lower())
    missing = []
    for table, columns in expected_columns(tables).values():
        have = present.get(table.lower())
        if have is None:
            missing.append(table)
        else:
            missing += [f"{table}.{c}" for c in columns if c.lower() not in have]
    return missing


def existing_tables(cursor: Any, database: str) -> set[str]:
    cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,))
    return {row[0].lower() for row in cursor.fetchall()}
