"""ServiceDetail parameter sets as the car reads them (FACTS.md "ServiceDetail parameter names").

Every parameter set of an energy service must carry ``Connector``,
``ControlMode``, ``MobilityNeedsMode`` and ``Pricing``; BPT services add
``BPTChannel`` and ``GeneratorMode``; AC services add ``EVSENominalVoltage``
(several EVCCs in the field stop when ``ControlMode`` is missing). Unknown
names are vendor extensions and ignored. A known parameter with a value
outside its code list is always an error; a missing one is an error when the
profile is strict, else a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from chargepoint.iso15118.messages import iso20 as m
from hal.sim.evcc.errors import CarError
from hal.sim.evcc.numbers import value_of
from hal.sim.evcc.profile import AC_SERVICES, BPT_SERVICES, CONTROL_MODE_CODES

_log = logging.getLogger(__name__)

_MSG = "ServiceDetailRes"

#: allowed codes per known parameter (None: any positive number)
KNOWN_PARAMETERS: Final[dict[str, frozenset[int] | None]] = {
    "Connector": frozenset({1, 2, 3, 4}),  # AC 1/3; DC 1 Core .. 4 Dual4
    "ControlMode": frozenset({1, 2}),  # 1 Scheduled, 2 Dynamic
    "MobilityNeedsMode": frozenset({1, 2}),  # 1 by EVCC, 2 by SECC
    "Pricing": frozenset({0, 1, 2}),  # none, absolute, levels
    "BPTChannel": frozenset({1, 2}),  # Unified, Separated
    "GeneratorMode": frozenset({1, 2}),  # GridFollowing, GridForming
    "GridCodeIslandingDetectionMethod": frozenset({1, 2}),  # Active, Passive
    "EVSENominalVoltage": None,
}
REQUIRED_COMMON: Final = ("Connector", "ControlMode", "MobilityNeedsMode", "Pricing")
REQUIRED_BPT: Final = ("BPTChannel", "GeneratorMode")
REQUIRED_AC: Final = ("EVSENominalVoltage",)


@dataclass(frozen=True, slots=True)
class ParameterSetInfo:
    parameter_set_id: int
    values: dict[str, float]

    @property
    def control_mode(self) -> str | None:
        code = self.values.get("ControlMode")
        for name, value in CONTROL_MODE_CODES.items():
            if code == value:
                return name
        return None

    @property
    def mobility_needs_mode(self) -> int:
        return int(self.values.get("MobilityNeedsMode", 1))


def _parameter_value(p: m.Parameter, field: str) -> float | str | bool:
    if p.int_value is not None:
        return p.int_value
    if p.short_value is not None:
        return p.short_value
    if p.byte_value is not None:
        return p.byte_value
    if p.rational_number is not None:
        return value_of(p.rational_number, _MSG, field)
    if p.bool_value is not None:
        return p.bool_value
    if p.finite_string is not None:
        return p.finite_string
    raise CarError(_MSG, field, "parameter without a value")


def parse_parameter_sets(
    res: m.ServiceDetailRes, service: str, *, strict: bool
) -> list[ParameterSetInfo]:
    """Validate every parameter set of ``res`` for ``service``; raise :class:`CarError`."""
    required = list(REQUIRED_COMMON)
    if service in BPT_SERVICES:
        required += REQUIRED_BPT
    if service in AC_SERVICES:
        required += REQUIRED_AC
    sets: list[ParameterSetInfo] = []
    seen_ids: set[int] = set()
    for i, pset in enumerate(res.service_parameter_list.parameter_set):
        where = f"ServiceParameterList.ParameterSet[{i}]"
        if pset.parameter_set_id in seen_ids:
            raise CarError(_MSG, f"{where}.ParameterSetID", f"duplicate ID {pset.parameter_set_id}")
        seen_ids.add(pset.parameter_set_id)
        values: dict[str, float] = {}
        for param in pset.parameter:
            field = f"{where}.Parameter[{param.name}]"
            allowed = KNOWN_PARAMETERS.get(param.name, ...)
            if allowed is ...:
                _log.debug("ServiceDetailRes: ignoring vendor parameter %s", param.name)
                continue
            raw = _parameter_value(param, field)
            if isinstance(raw, bool | str):
                raise CarError(_MSG, field, f"expected a number, got {raw!r}")
            if allowed is None:
                if raw <= 0:
                    raise CarError(_MSG, field, f"must be > 0, got {raw}")
            elif raw not in allowed:
                raise CarError(_MSG, field, f"value {raw} not in {sorted(allowed)}")
            if param.name in values and values[param.name] != raw:
                raise CarError(
                    _MSG, field, f"given twice with different values {values[param.name]} / {raw}"
                )
            values[param.name] = float(raw)
        missing = [name for name in required if name not in values]
        if missing:
            if strict:
                raise CarError(_MSG, where, f"missing parameter(s) {', '.join(missing)}")
            _log.warning(
                "ServiceDetailRes: parameter set %d lacks %s", pset.parameter_set_id, missing
            )
        sets.append(ParameterSetInfo(pset.parameter_set_id, values))
    return sets


def choose_parameter_set(
    sets: list[ParameterSetInfo], control_mode: str
) -> ParameterSetInfo | None:
    """The first set of the wanted control mode (Unified BPT channel preferred)."""
    matching = [s for s in sets if s.control_mode == control_mode]
    unified = [s for s in matching if s.values.get("BPTChannel", 1) == 1]
    if unified:
        return unified[0]
    return matching[0] if matching else None
