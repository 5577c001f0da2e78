"""RationalNumber <-> float at the edge of the session (ISO 15118-20 8.3.5.3.x).

``RationalNumber = Value (short) * 10^Exponent (byte)`` (FACTS.md "EXI").
Outgoing values keep three significant decimals at most and always fit a
short; incoming values are checked for being finite and bounded so that a
hostile exponent cannot push ``inf`` into the arithmetic.
"""

from __future__ import annotations

import math

from chargepoint.iso15118.messages import iso20 as m

_SHORT_MAX = 32767
# Physical quantities on a charger never come near this (W, A, V, Wh); a peer that
# sends more is treated as sending garbage (RemoteValueError).
MAX_MAGNITUDE = 1.0e9


class RemoteValueError(ValueError):
    """A number from the EV is not usable (not finite or absurdly large)."""


def to_rational(value: float) -> m.RationalNumber:
    """The closest RationalNumber with the smallest exponent >= -3 that fits a short."""
    if not math.isfinite(value):
        raise ValueError(f"cannot send {value!r} as a RationalNumber")
    if value == 0.0:
        return m.RationalNumber(exponent=0, value=0)
    exponent = -3
    while abs(round(value / 10.0**exponent)) > _SHORT_MAX:
        exponent += 1
    mantissa = round(value / 10.0**exponent)
    while exponent < 0 and mantissa % 10 == 0 and mantissa != 0:
        mantissa //= 10
        exponent += 1
    return m.RationalNumber(exponent=exponent, value=mantissa)


def from_rational(number: m.RationalNumber, field: str) -> float:
    """A received RationalNumber as a float; RemoteValueError names ``field``."""
    try:
        value = number.value * 10.0**number.exponent
    except OverflowError:
        raise RemoteValueError(f"{field}: {number.value}e{number.exponent} overflows") from None
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise RemoteValueError(f"{field}: {number.value}e{number.exponent} is out of range")
    return value


def optional(number: m.RationalNumber | None, field: str) -> float | None:
    return None if number is None else from_rational(number, field)
