"""Plausibility checks on what the SECC sends (pure; raise :class:`CarError`).

The car accepts the sign of EVSE discharge limits either way (FACTS.md "Sign
convention") but holds present values to the sign convention: + to the EV.
Measured values lag commands, so current/power are compared with what the
car allowed within the last ``limit_grace_s`` (see ``targets.RecentMax``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Final

from chargepoint.iso15118.messages import iso20 as m
from hal.sim.evcc.errors import CarError
from hal.sim.evcc.numbers import optional_value, value_of

RELATIVE_SLACK: Final = 0.05
CURRENT_SLACK_A: Final = 2.0
POWER_SLACK_W: Final = 100.0
OVERVOLTAGE_SLACK_V: Final = 20.0
CABLE_CHECK_SLACK_V: Final = 20.0


@dataclass(frozen=True, slots=True)
class EvseLimits:
    """EVSE limits from ChargeParameterDiscovery (magnitudes), updated by Dynamic loops."""

    max_voltage_v: float = math.inf
    min_voltage_v: float = 0.0
    max_charge_current_a: float = math.inf
    max_charge_power_w: float = math.inf
    max_discharge_current_a: float = 0.0
    max_discharge_power_w: float = 0.0


def _get(mode: Any, msg: str, prefix: str, attr: str, xsd: str) -> float:
    return value_of(getattr(mode, attr), msg, f"{prefix}.{xsd}")


def dc_cpd_limits(res: m.DC_ChargeParameterDiscoveryRes, *, bpt: bool) -> EvseLimits:
    msg = "DC_ChargeParameterDiscoveryRes"
    mode: Any
    if bpt:
        mode, prefix = res.bpt_dc_cpd_res_energy_transfer_mode, "BPT_DC_CPDResEnergyTransferMode"
    else:
        mode, prefix = res.dc_cpd_res_energy_transfer_mode, "DC_CPDResEnergyTransferMode"
    if mode is None:
        raise CarError(msg, prefix, "missing for the selected service")
    limits = EvseLimits(
        max_voltage_v=_get(mode, msg, prefix, "evse_maximum_voltage", "EVSEMaximumVoltage"),
        min_voltage_v=_get(mode, msg, prefix, "evse_minimum_voltage", "EVSEMinimumVoltage"),
        max_charge_current_a=_get(
            mode, msg, prefix, "evse_maximum_charge_current", "EVSEMaximumChargeCurrent"
        ),
        max_charge_power_w=_get(
            mode, msg, prefix, "evse_maximum_charge_power", "EVSEMaximumChargePower"
        ),
    )
    for xsd, value in (
        ("EVSEMaximumVoltage", limits.max_voltage_v),
        ("EVSEMinimumVoltage", limits.min_voltage_v),
        ("EVSEMaximumChargeCurrent", limits.max_charge_current_a),
        ("EVSEMaximumChargePower", limits.max_charge_power_w),
    ):
        if value < 0:
            raise CarError(msg, f"{prefix}.{xsd}", f"negative: {value}")
    if limits.min_voltage_v > limits.max_voltage_v:
        raise CarError(
            msg,
            f"{prefix}.EVSEMinimumVoltage",
            f"{limits.min_voltage_v} V > maximum {limits.max_voltage_v} V",
        )
    if bpt:
        limits = replace(
            limits,
            max_discharge_current_a=abs(
                _get(
                    mode,
                    msg,
                    prefix,
                    "evse_maximum_discharge_current",
                    "EVSEMaximumDischargeCurrent",
                )
            ),
            max_discharge_power_w=abs(
                _get(mode, msg, prefix, "evse_maximum_discharge_power", "EVSEMaximumDischargePower")
            ),
        )
    return limits


def ac_cpd_limits(res: m.AC_ChargeParameterDiscoveryRes, *, bpt: bool) -> EvseLimits:
    msg = "AC_ChargeParameterDiscoveryRes"
    mode: Any
    if bpt:
        mode, prefix = res.bpt_ac_cpd_res_energy_transfer_mode, "BPT_AC_CPDResEnergyTransferMode"
    else:
        mode, prefix = res.ac_cpd_res_energy_transfer_mode, "AC_CPDResEnergyTransferMode"
    if mode is None:
        raise CarError(msg, prefix, "missing for the selected service")
    max_p = _get(mode, msg, prefix, "evse_maximum_charge_power", "EVSEMaximumChargePower")
    if max_p < 0:
        raise CarError(msg, f"{prefix}.EVSEMaximumChargePower", f"negative: {max_p}")
    freq = _get(mode, msg, prefix, "evse_nominal_frequency", "EVSENominalFrequency")
    if not 45.0 <= freq <= 65.0:
        raise CarError(msg, f"{prefix}.EVSENominalFrequency", f"{freq} Hz is not a grid frequency")
    max_dp = 0.0
    if bpt:
        max_dp = abs(
            _get(mode, msg, prefix, "evse_maximum_discharge_power", "EVSEMaximumDischargePower")
        )
    return EvseLimits(max_charge_power_w=max_p, max_discharge_power_w=max_dp)


_LOOP_MODES: Final[dict[tuple[bool, bool], tuple[str, str]]] = {
    (True, True): ("bpt_dynamic_{}_cl_res_control_mode", "BPT_Dynamic_{}_CLResControlMode"),
    (True, False): ("bpt_scheduled_{}_cl_res_control_mode", "BPT_Scheduled_{}_CLResControlMode"),
    (False, True): ("dynamic_{}_cl_res_control_mode", "Dynamic_{}_CLResControlMode"),
    (False, False): ("scheduled_{}_cl_res_control_mode", "Scheduled_{}_CLResControlMode"),
}


def loop_mode(res: Any, msg: str, *, dc: bool, bpt: bool, dynamic: bool) -> tuple[Any, str]:
    """The control-mode element that must answer the car's request, and its XSD name."""
    attr, xsd = _LOOP_MODES[(bpt, dynamic)]
    kind = "dc" if dc else "ac"
    mode = getattr(res, attr.format(kind))
    name = xsd.format(kind.upper())
    if mode is None:
        raise CarError(msg, name, "missing: it must match the control mode of the request")
    return mode, name


def updated_limits(old: EvseLimits, mode: Any, msg: str, prefix: str) -> EvseLimits:
    """EVSE limits as a loop response refreshes them (absent fields keep their value)."""

    def opt(attr: str, xsd: str, current: float) -> float:
        value = optional_value(getattr(mode, attr, None), msg, f"{prefix}.{xsd}")
        return current if value is None else abs(value)

    return EvseLimits(
        max_voltage_v=opt("evse_maximum_voltage", "EVSEMaximumVoltage", old.max_voltage_v),
        min_voltage_v=opt("evse_minimum_voltage", "EVSEMinimumVoltage", old.min_voltage_v),
        max_charge_current_a=opt(
            "evse_maximum_charge_current", "EVSEMaximumChargeCurrent", old.max_charge_current_a
        ),
        max_charge_power_w=opt(
            "evse_maximum_charge_power", "EVSEMaximumChargePower", old.max_charge_power_w
        ),
        max_discharge_current_a=opt(
            "evse_maximum_discharge_current",
            "EVSEMaximumDischargeCurrent",
            old.max_discharge_current_a,
        ),
        max_discharge_power_w=opt(
            "evse_maximum_discharge_power", "EVSEMaximumDischargePower", old.max_discharge_power_w
        ),
    )


def check_present_voltage(msg: str, value: float, evse: EvseLimits, ev_max_v: float) -> None:
    if value < 0:
        raise CarError(msg, "EVSEPresentVoltage", f"negative: {value} V")
    if value > evse.max_voltage_v * (1 + RELATIVE_SLACK) + 5.0:
        raise CarError(
            msg,
            "EVSEPresentVoltage",
            f"{value:.1f} V above the announced EVSEMaximumVoltage {evse.max_voltage_v:.1f} V",
        )
    if value > ev_max_v + OVERVOLTAGE_SLACK_V:
        raise CarError(
            msg, "EVSEPresentVoltage", f"{value:.1f} V above the EV maximum {ev_max_v:.1f} V"
        )


def check_inlet_match(msg: str, evse_v: float, inlet_v: float, tolerance_v: float) -> None:
    if abs(evse_v - inlet_v) > tolerance_v:
        raise CarError(
            msg,
            "EVSEPresentVoltage",
            f"{evse_v:.1f} V but the car measures {inlet_v:.1f} V at its inlet",
        )


def check_signed(
    msg: str, field: str, value: float, allowed: float, allowed_back: float, *, bpt: bool, unit: str
) -> None:
    """``value`` (+ to the EV) within what the car allowed each way, with slack."""
    slack = CURRENT_SLACK_A if unit == "A" else POWER_SLACK_W
    if value > allowed * (1 + RELATIVE_SLACK) + slack:
        raise CarError(
            msg, field, f"{value:.1f} {unit}, the car allowed at most {allowed:.1f} {unit}"
        )
    if -value > allowed_back * (1 + RELATIVE_SLACK) + slack:
        why = (
            "no BPT service selected"
            if not bpt
            else f"the car allowed at most {allowed_back:.1f} {unit} of discharge"
        )
        raise CarError(msg, field, f"{value:.1f} {unit} (discharge): {why}")


def check_cable_check_voltage(inlet_v: float, ev_max_v: float) -> None:
    """IEC 61851-23 test voltage: min(EV max + 50 V, 500 V) up to 500 V, else 1.1 * EV max."""
    limit = max(ev_max_v + 50.0, 1.1 * ev_max_v) + CABLE_CHECK_SLACK_V
    if inlet_v > limit:
        raise CarError(
            "DC_CableCheckRes",
            "inlet voltage",
            f"{inlet_v:.0f} V during cable check, above {limit:.0f} V",
        )
