"""The EV's charging needs, gathered from its ChargeParameterDiscovery and
ScheduleExchange requests, for the CSMS (OCPP K15/K17 NotifyEVChargingNeeds).

A CSMS plans a schedule only from what the car said: energy, departure,
power and current ranges, and with BPT how much it may give back.  Values a
car sends out of range raise :class:`RemoteValueError` in ``from_rational``
(the session answers FAILED_WrongChargeParameter); the rest are magnitudes.
"""

from __future__ import annotations

from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import EvNeeds
from chargepoint.iso15118.secc.numbers import optional
from chargepoint.power.arbitration import discharge_magnitude

CpdMode = (
    m.DC_CPDReqEnergyTransferMode
    | m.BPT_DC_CPDReqEnergyTransferMode
    | m.AC_CPDReqEnergyTransferMode
    | m.BPT_AC_CPDReqEnergyTransferMode
)


def _mag(value: m.RationalNumber | None, field: str) -> float | None:
    found = optional(value, field)
    return None if found is None else abs(found)


def _discharge(value: m.RationalNumber | None, field: str) -> float | None:
    found = optional(value, field)
    return None if found is None else discharge_magnitude(found)


def ev_needs(
    cpd: CpdMode, req: m.ScheduleExchangeReq, *, dc: bool, bpt: bool, control_mode: str
) -> EvNeeds:
    """Needs from the CPD energy-transfer mode and the ScheduleExchangeReq."""
    dynamic = req.dynamic_se_req_control_mode
    scheduled = req.scheduled_se_req_control_mode
    se = dynamic if dynamic is not None else scheduled
    departure = None if se is None else se.departure_time
    target_soc = dynamic.target_soc if dynamic is not None else None
    if target_soc is None and isinstance(
        cpd, m.DC_CPDReqEnergyTransferMode | m.BPT_DC_CPDReqEnergyTransferMode
    ):
        target_soc = cpd.target_soc
    current_max = current_min = voltage_max = voltage_min = None
    if isinstance(cpd, m.DC_CPDReqEnergyTransferMode | m.BPT_DC_CPDReqEnergyTransferMode):
        current_max = _mag(cpd.ev_maximum_charge_current, "EVMaximumChargeCurrent")
        current_min = _mag(cpd.ev_minimum_charge_current, "EVMinimumChargeCurrent")
        voltage_max = _mag(cpd.ev_maximum_voltage, "EVMaximumVoltage")
        voltage_min = _mag(cpd.ev_minimum_voltage, "EVMinimumVoltage")
    dis_p_max = dis_p_min = dis_c_max = dis_c_min = None
    if isinstance(cpd, m.BPT_DC_CPDReqEnergyTransferMode):
        dis_c_max = _discharge(cpd.ev_maximum_discharge_current, "EVMaximumDischargeCurrent")
        dis_c_min = _discharge(cpd.ev_minimum_discharge_current, "EVMinimumDischargeCurrent")
    if isinstance(cpd, m.BPT_DC_CPDReqEnergyTransferMode | m.BPT_AC_CPDReqEnergyTransferMode):
        dis_p_max = _discharge(cpd.ev_maximum_discharge_power, "EVMaximumDischargePower")
        dis_p_min = _discharge(cpd.ev_minimum_discharge_power, "EVMinimumDischargePower")
    return EvNeeds(
        dc=dc,
        bpt=bpt,
        control_mode=control_mode,
        departure_time_s=departure,
        target_energy_wh=None
        if se is None
        else _mag(se.ev_target_energy_request, "EVTargetEnergyRequest"),
        min_energy_wh=None
        if se is None
        else _mag(se.ev_minimum_energy_request, "EVMinimumEnergyRequest"),
        max_energy_wh=None
        if se is None
        else _mag(se.ev_maximum_energy_request, "EVMaximumEnergyRequest"),
        target_soc_pct=target_soc,
        max_charge_power_w=_mag(cpd.ev_maximum_charge_power, "EVMaximumChargePower"),
        min_charge_power_w=_mag(cpd.ev_minimum_charge_power, "EVMinimumChargePower"),
        max_charge_current_a=current_max,
        min_charge_current_a=current_min,
        max_voltage_v=voltage_max,
        min_voltage_v=voltage_min,
        max_discharge_power_w=dis_p_max,
        min_discharge_power_w=dis_p_min,
        max_discharge_current_a=dis_c_max,
        min_discharge_current_a=dis_c_min,
        max_schedule_tuples=3,  # [V2G20] at most three ScheduleTuples are offered
    )
