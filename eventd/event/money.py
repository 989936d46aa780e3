"""Money as integer micro-units (1 unit = 1,000,000 micro-units) from the first parse on.

Floats never touch money: JSON is parsed with ``parse_float=Decimal``, so ``0.1`` arrives
as ``Decimal("0.1")`` and becomes exactly ``100000``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from eventd.errors import InvalidEvent

MICROS = 1_000_000
SCALE = 6
MAX_MICROS = 2**63 - 1  # an Avro long; DECIMAL(20,6) in MariaDB holds more
# The usual form of money in events ("0.004762"): read with int() instead of Decimal. At most 12
# whole digits, so it is always in range; every other form takes the Decimal path.
_PLAIN = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,6}))?")
_PAD = ("000000", "00000", "0000", "000", "00", "0", "")


def to_micros(value: Any, field: str) -> int:
    """``value`` (JSON int, Decimal or numeric string) → micro-units, exactly.

    Raises :class:`InvalidEvent` naming ``field`` for anything that is not a finite,
    non-negative number with at most 6 decimal places that fits in 64 bits.
    """
    if type(value) is str and (m := _PLAIN.fullmatch(value)):
        whole, frac = m.groups()
        return int(whole) * MICROS + (int(frac + _PAD[len(frac)]) if frac else 0)
    if isinstance(value, bool):
        raise InvalidEvent(f"money must be a number, got {_json_type(value)}", field)
    if isinstance(value, int):
        micros = value * MICROS
    elif isinstance(value, (Decimal, str)):
        micros = _decimal_micros(value, field)
    else:
        raise InvalidEvent(f"money must be a number, got {_json_type(value)}", field)
    if micros < 0:
        raise InvalidEvent(f"money must not be negative, got {value}", field)
    if micros > MAX_MICROS:
        raise InvalidEvent(f"money {value} is out of range (at most {MAX_MICROS // MICROS})", field)
    return micros


def _decimal_micros(value: Decimal | str, field: str) -> int:
    try:
        dec = Decimal(value.strip()) if isinstance(value, str) else value
    except InvalidOperation:
        raise InvalidEvent(f"money must be a number, got {value!r}", field) from None
    if not dec.is_finite():
        raise InvalidEvent(f"money must be finite, got {value}", field)
    exponent = dec.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -SCALE and dec != dec.quantize(Decimal(1).scaleb(-SCALE)):
        raise InvalidEvent(f"money {value} has more than {SCALE} decimal places", field)
    if abs(dec.adjusted()) > 30:
        raise InvalidEvent(f"money {value} is out of range", field)
    return int(dec.scaleb(SCALE))


def format_micros(micros: int) -> str:
    """``1500000`` → ``"1.500000"`` (for logs and docs; never parsed back as float)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    return f"{sign}{whole}.{frac:06d}"


def _json_type(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object",
            type(None): "null"}.get(type(value), type(value).__name__)
