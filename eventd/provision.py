"""``eventd setup``: create everything the configuration needs, in every system. Idempotent:
each step returns what it created, and a second run creates nothing."""

from __future__ import annotations

import logging

from eventd.config import Config
from eventd.event.schemas import SchemaStore
from eventd.kafka.topics import ensure_topics
from eventd.roles import ROLE_MODULES, role_module

log = logging.getLogger(__name__)


def provision(cfg: Config) -> list[str]:
    """Create what is missing; returns one line per change (empty when nothing changed)."""
    store = SchemaStore.load(cfg.events.schema_dir)
    changes = [f"kafka: created topic {t}" for t in ensure_topics(cfg, store)]
    for name in ROLE_MODULES:
        section = getattr(cfg, name.replace("-", "_"))
        module = role_module(name)
        if section.role.enabled and hasattr(module, "setup"):
            changes += [f"{name}: {c}" for c in module.setup(cfg)]
    return changes
