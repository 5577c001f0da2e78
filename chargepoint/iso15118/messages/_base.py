"""Hand-written base pieces for the generated ISO 15118 message models."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, model_validator


def _hex_in(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise ValueError("expected a hex string") from exc
    return value


def _hex_out(value: bytes) -> str:
    return value.hex()


#: bytes; accepts a hex string on input, serialises to lowercase hex in JSON mode.
HexBytes = Annotated[
    bytes, BeforeValidator(_hex_in), PlainSerializer(_hex_out, return_type=str, when_used="json")
]


class ExiModel(BaseModel):
    """Base of every generated message model."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, extra="forbid")

    _exi_choices: ClassVar[tuple[tuple[tuple[str, ...], int, int | None], ...]] = ()

    @model_validator(mode="after")
    def _check_choices(self) -> Self:
        for names, lo, hi in self._exi_choices:
            count = 0
            for name in names:
                value = getattr(self, name)
                if value is not None:
                    count += len(value) if isinstance(value, list) else 1
            if count < lo or (hi is not None and count > hi):
                raise ValueError(
                    f"xs:choice {'|'.join(names)}: {count} item(s), expected {lo}..{hi or 'n'}"
                )
        return self


class RationalNumberMixin:
    """``Value * 10 ** Exponent`` <-> :class:`decimal.Decimal`, losslessly."""

    exponent: int
    value: int

    if TYPE_CHECKING:  # the concrete class is a pydantic model

        def __init__(self, **data: Any) -> None: ...

    def to_decimal(self) -> Decimal:
        return Decimal(self.value).scaleb(self.exponent)

    @classmethod
    def from_decimal(cls, number: Decimal | int | str) -> Self:
        """Exact conversion; ``ValueError`` if not representable (Value short, Exponent byte).

        The exponent is kept as close to zero as possible: ``Decimal("400")`` gives
        ``Value=400, Exponent=0``, ``Decimal("1000000")`` gives ``10000 * 10**2``.
        """
        d = Decimal(number)
        if not d.is_finite():
            raise ValueError("not a finite number")
        sign, digits, exp = d.as_tuple()
        assert isinstance(exp, int)
        mant = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        if mant == 0:
            return cls(Exponent=0, Value=0)
        while exp < 0 and mant % 10 == 0:
            mant //= 10
            exp += 1
        while not -32768 <= mant <= 32767 and mant % 10 == 0:
            mant //= 10
            exp += 1
        while exp > 127 and -32768 <= mant * 10 <= 32767:
            mant *= 10
            exp -= 1
        if not (-32768 <= mant <= 32767 and -128 <= exp <= 127):
            raise ValueError(f"{number} is not representable as a RationalNumber")
        return cls(Exponent=exp, Value=mant)
