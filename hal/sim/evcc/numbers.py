"""RationalNumber <-> float for the car (``Value`` short * 10^``Exponent`` byte, FACTS.md "EXI").

Outgoing values keep at most three decimals and always fit a short; incoming
values must be finite and physically bounded, otherwise :class:`CarError`
names the message and field.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TypeVar

from chargepoint.iso15118.messages import iso20 as m
from hal.sim.evcc.errors import CarError

_SHORT_MAX = 32767
#: No charger quantity (V, A, W, Wh, Hz) comes near this; more is garbage.
MAX_MAGNITUDE = 1.0e9

T = TypeVar("T")


def new(cls: type[T], **fields: object) -> T:
    """Build a message model by snake_case keywords (works for any model base class)."""
    return cls(**fields)


def rational(value: float) -> m.RationalNumber:
    """Closest RationalNumber with the smallest exponent >= -3 whose value fits a short."""
    if not math.isfinite(value):
        raise ValueError(f"cannot send {value!r} as a RationalNumber")
    exponent = -3
    mantissa = round(value * 1000.0)
    while abs(mantissa) > _SHORT_MAX:
        exponent += 1
        mantissa = round(value / 10.0**exponent)
    return m.RationalNumber.from_decimal(Decimal(mantissa).scaleb(exponent))


def value_of(number: m.RationalNumber, message: str, field: str) -> float:
    """A received RationalNumber as float; :class:`CarError` if absurd."""
    try:
        value = float(number.to_decimal())
    except (OverflowError, ArithmeticError):
        raise CarError(message, field, f"{number.value}e{number.exponent} overflows") from None
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise CarError(message, field, f"{number.value}e{number.exponent} is out of range")
    return value


def optional_value(number: m.RationalNumber | None, message: str, field: str) -> float | None:
    return None if number is None else value_of(number, message, field)
