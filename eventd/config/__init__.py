"""The configuration: one YAML file, validated once into frozen dataclasses.

``load_config(path)`` is the only entry point. Every problem is a :class:`ConfigError`
reading ``FILE:LINE: key.path: what is wrong (expected …)``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from eventd.config.balances import BalanceAggregatorConfig
from eventd.config.clickhouse import ClickHouseLoaderConfig
from eventd.config.collector import CollectorConfig
from eventd.config.common import EventsConfig, KafkaConfig, MetricsConfig, NodeConfig
from eventd.config.daemon import DaemonConfig
from eventd.config.hdfs import HdfsUploaderConfig
from eventd.config.monitor import MonitorConfig
from eventd.config.reader import Section, load_yaml
from eventd.config.secret import Secret
from eventd.errors import ConfigError

DEFAULT_PATH = "/etc/eventd/eventd.yaml"


@dataclass(frozen=True)
class Config:
    path: str
    node: NodeConfig
    metrics: MetricsConfig
    kafka: KafkaConfig
    events: EventsConfig
    daemon: DaemonConfig
    collector: CollectorConfig
    clickhouse_loader: ClickHouseLoaderConfig
    balance_aggregator: BalanceAggregatorConfig
    hdfs_uploader: HdfsUploaderConfig
    monitor: MonitorConfig


def config_path(cli_value: str | None) -> str:
    """``-c FILE``, else ``$EVENTD_CONFIG``, else ``/etc/eventd/eventd.yaml``."""
    return cli_value or os.environ.get("EVENTD_CONFIG") or DEFAULT_PATH


def load_config(path: str) -> Config:
    """Read and validate ``path``; raises :class:`ConfigError` on the first problem."""
    root = load_yaml(path)
    node = _read(root, "node", NodeConfig.read)
    kafka = _read(root, "kafka", KafkaConfig.read)
    cfg = Config(path=os.path.abspath(path), node=node, kafka=kafka,
                 metrics=_read(root, "metrics", MetricsConfig.read),
                 events=_read(root, "events", lambda s: EventsConfig.read(s, kafka.topics)),
                 daemon=_read(root, "daemon", lambda s: DaemonConfig.read(s, node.state_dir)),
                 collector=_read(root, "collector", lambda s: CollectorConfig.read(s, node.state_dir)),
                 clickhouse_loader=_read(root, "clickhouse_loader", ClickHouseLoaderConfig.read),
                 balance_aggregator=_read(root, "balance_aggregator", BalanceAggregatorConfig.read),
                 hdfs_uploader=_read(root, "hdfs_uploader", lambda s: HdfsUploaderConfig.read(s, node.state_dir)),
                 monitor=_read(root, "monitor", lambda s: MonitorConfig.read(s, node.state_dir)))
    root.finish()
    _check_combinations(root, cfg)
    return cfg


def _read(root: Section, key: str, read):  # type: ignore[no-untyped-def]
    section = root.section(key)
    value = read(section)
    section.finish()
    return value


def _check_combinations(root: Section, cfg: Config) -> None:
    """Rules that span sections."""
    if not os.path.isdir(cfg.events.schema_dir):
        raise ConfigError(root.file, None, "events.schema_dir", f"{cfg.events.schema_dir} is not a directory")
    topics = {t.topic for t in cfg.events.types.values()}
    for special in (cfg.kafka.topics.dead_letter, cfg.kafka.topics.control):
        if special in topics:
            raise ConfigError(root.file, None, "kafka.topics", f"{special} is also an event topic")


def printable(value: Any) -> Any:
    """The configuration as plain data for ``check-config``, with every secret masked."""
    if isinstance(value, Secret):
        return f"*** (from {value.source})" if value.value else "(empty)"
    if dataclasses.is_dataclass(value):
        return {f.name: printable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [printable(v) for v in value]
    return value


__all__ = ["Config", "ConfigError", "load_config", "config_path", "printable", "DEFAULT_PATH"]
