"""Converters for config values: each takes the YAML value and returns the typed value or
raises ``ValueError`` whose message says what was expected (the reader adds file, line, key)."""

from __future__ import annotations

import re
from typing import Any, Callable

Converter = Callable[[Any], Any]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
               "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def duration(value: Any) -> float:
    """``"250ms"``, ``"5s"``, ``"10m"``, ``"1h"``, ``"7d"`` → seconds (float). Bare numbers are refused:
    a sysadmin reading ``timeout: 30`` cannot know the unit."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{value!r} is not a duration (expected a number with a unit: ms, s, m, h, d; e.g. 5s)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def size(value: Any) -> int:
    """``"64MiB"``, ``"1GiB"``, ``"512KB"`` or a plain integer of bytes → bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{value!r} is not a size (expected bytes with a unit: B, KiB, MiB, GiB, TiB, KB, MB, GB; e.g. 64MiB)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string (expected text)")
    return value


def nonempty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not a boolean (expected true or false)")
    return value


def integer(lo: int | None = None, hi: int | None = None) -> Converter:
    """An integer within ``[lo, hi]``."""
    def convert(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{value} is out of range (expected {lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'})")
        return value
    return convert


def ratio(value: Any) -> float:
    """A number between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{value!r} is not a ratio (expected a number from 0 to 1)")
    return float(value)


def choice(*options: str) -> Converter:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not allowed (expected one of: {', '.join(options)})")
        return str(value)
    return convert


def host_port(value: Any) -> tuple[str, int]:
    """``"127.0.0.1:9092"`` → ``("127.0.0.1", 9092)``; ``[::1]:80`` is accepted for IPv6."""
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return host, int(port)
    raise ValueError(f"{value!r} is not an address (expected HOST:PORT, e.g. 127.0.0.1:9092)")


def file_mode(value: Any) -> int:
    """A Unix permission mode written as an octal string, e.g. ``"0660"``."""
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value):
        return int(value, 8)
    raise ValueError(f"{value!r} is not a file mode (expected an octal string in quotes, e.g. \"0660\")")


def list_of(item: Converter, min_items: int = 0) -> Converter:
    def convert(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"{value!r} is not a list")
        if len(value) < min_items:
            raise ValueError(f"needs at least {min_items} item(s)")
        return tuple(item(v) for v in value)
    return convert


def format_duration(seconds: float) -> str:
    """Inverse of :func:`duration`, for printing the effective configuration."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{round(seconds * 1000)}ms"
