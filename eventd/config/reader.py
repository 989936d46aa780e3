"""Reads the YAML file with line numbers, so every error points at ``FILE:LINE: key.path``.

Sections are read key by key with the default written inline next to the converter
(``section.get("linger", duration, "20ms")``); :meth:`Section.finish` then reports any key
that nobody asked for — a typo must never be silently ignored.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from eventd.errors import ConfigError

T = TypeVar("T")
REQUIRED: Any = object()
_constructor = SafeConstructor()


def load_yaml(path: str) -> "Section":
    """Parse ``path`` into the root :class:`Section`; syntax errors become :class:`ConfigError`."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read the configuration file: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(path, line, "", f"invalid YAML: {exc.problem}") from None
    if root is None:
        root = MappingNode("tag:yaml.org,2002:map", [])
    if not isinstance(root, MappingNode):
        raise ConfigError(path, _line(root), "", "the top level must be a mapping of sections")
    return Section(path, "", root, _line(root))


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _plain(node: Node) -> Any:
    """The Python value of a node (scalars, lists and maps of scalars)."""
    if isinstance(node, ScalarNode):
        return _constructor.construct_object(node, deep=True)
    if isinstance(node, SequenceNode):
        return [_plain(n) for n in node.value]
    return {_plain(k): _plain(v) for k, v in node.value}


class Section:
    """One YAML mapping, read key by key."""

    def __init__(self, file: str, path: str, node: MappingNode | None, line: int) -> None:
        self.file, self.path, self.line = file, path, line
        self._nodes: dict[str, tuple[Node, Node]] = {}
        self._used: set[str] = set()
        for key_node, value_node in (node.value if node else []):
            key = _plain(key_node)
            if not isinstance(key, str):
                raise ConfigError(file, _line(key_node), self._key(str(key)), "keys must be strings")
            if key in self._nodes:
                raise ConfigError(file, _line(key_node), self._key(key), "duplicate key")
            self._nodes[key] = (key_node, value_node)

    @property
    def base_dir(self) -> str:
        """The config file's directory: relative paths in the config are relative to it."""
        return os.path.dirname(os.path.abspath(self.file))

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self._nodes

    def keys(self) -> list[str]:
        return list(self._nodes)

    def error(self, key: str, reason: str) -> ConfigError:
        """A :class:`ConfigError` pointing at ``key`` (or at this section if the key is absent)."""
        line = _line(self._nodes[key][1]) if key in self._nodes else self.line
        return ConfigError(self.file, line, self._key(key), reason)

    def get(self, key: str, convert: Callable[[Any], T], default: Any = REQUIRED) -> T:
        """The value of ``key`` converted by ``convert``; ``default`` (converted too) if absent."""
        self._used.add(key)
        if key not in self._nodes:
            if default is REQUIRED:
                raise self.error(key, "missing required value")
            return default if default is None else self._convert(key, convert, default)
        node = self._nodes[key][1]
        if isinstance(node, MappingNode):
            raise self.error(key, "expected a single value, found a mapping")
        return self._convert(key, convert, _plain(node))

    def _convert(self, key: str, convert: Callable[[Any], T], value: Any) -> T:
        try:
            return convert(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def section(self, key: str) -> "Section":
        """The sub-mapping ``key``; an absent one reads as empty, so every default applies."""
        self._used.add(key)
        if key not in self._nodes:
            return Section(self.file, self._key(key), None, self.line)
        node = self._nodes[key][1]
        if isinstance(node, ScalarNode) and node.value in ("", "~", "null"):
            return Section(self.file, self._key(key), None, _line(node))
        if not isinstance(node, MappingNode):
            raise self.error(key, "expected a mapping of keys")
        return Section(self.file, self._key(key), node, _line(node))

    def sections(self, key: str, min_items: int = 0) -> list["Section"]:
        """A list of mappings (e.g. ClickHouse destinations)."""
        self._used.add(key)
        node = self._nodes[key][1] if key in self._nodes else None
        if node is not None and not isinstance(node, SequenceNode):
            raise self.error(key, "expected a list")
        items = node.value if node is not None else []
        if len(items) < min_items:
            raise self.error(key, f"needs at least {min_items} item(s)")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, MappingNode):
                raise ConfigError(self.file, _line(item), f"{self._key(key)}[{i}]", "expected a mapping")
            out.append(Section(self.file, f"{self._key(key)}[{i}]", item, _line(item)))
        return out

    def mapping(self, key: str) -> dict[str, "Section"]:
        """A mapping of names to sub-mappings (e.g. ``events.types``)."""
        sub = self.section(key)
        return {name: sub.section(name) for name in sub.keys()}

    def finish(self) -> None:
        """Raise on the first key that was never read: it is a typo or a misplaced key."""
        for key, (key_node, _) in self._nodes.items():
            if key not in self._used:
                known = ", ".join(sorted(self._used)) or "none"
                raise ConfigError(self.file, _line(key_node), self._key(key),
                                  f"unknown key (expected one of: {known})")
