"""The roles. Each is a sub-package whose ``main(ctx)`` runs it in the foreground until
``ctx.stop`` is set, and whose optional ``setup(cfg)`` creates what it needs in its sink.

Imported lazily by name so that a role's process loads only its own dependencies.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ROLE_MODULES = {
    "collector": "eventd.roles.collector",
    "clickhouse-loader": "eventd.roles.clickhouse_loader",
    "balance-aggregator": "eventd.roles.balance_aggregator",
    "hdfs-uploader": "eventd.roles.hdfs_uploader",
    "monitor": "eventd.roles.monitor",
}


def role_module(name: str) -> ModuleType:
    """The module of role ``name``; KeyError for an unknown name."""
    return importlib.import_module(ROLE_MODULES[name])
