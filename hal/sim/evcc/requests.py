"""Requests of the simulated EVCC, built from its battery model and its driver (pure).

Sign convention: + to the EV ([V2G20-1034], [V2G20-1035]); discharge *limits*
carry the profile's ``discharge_limit_sign`` (FACTS.md: peers send both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chargepoint.iso15118.messages import app_protocol as ap
from chargepoint.iso15118.messages import iso20 as m
from hal.sim.evcc.numbers import new, rational
from hal.sim.evcc.profile import (
    AC_SERVICES,
    DC_SERVICES,
    NAMESPACE_AC,
    NAMESPACE_DC,
    CarControls,
    CarProfile,
    EvMeasurements,
)
from hal.sim.evcc.schedule import ScheduleTupleInfo
from hal.sim.evcc.targets import EnergyRequests, Limits

NO_DEPARTURE_S = 86_400  # Dynamic mode needs a DepartureTime; none set: a day


def header(session_id: bytes, now: float, epoch_offset_s: float) -> m.MessageHeader:
    """-20 header; TimeStamp in Unix seconds (peers also send microseconds, FACTS.md)."""
    return new(m.MessageHeader, session_id=session_id, time_stamp=max(0, int(now + epoch_offset_s)))


def pct(value: float) -> int:
    return max(0, min(100, round(value)))


def supported_app_protocol_req(
    services: tuple[str, ...],
) -> tuple[ap.SupportedAppProtocolReq, dict[int, str]]:
    """-20 DC and/or -20 AC (version 1.0), ranked by the first service of each family."""
    ranked = sorted(
        (min(i for i, s in enumerate(services) if s in family), namespace)
        for namespace, family in ((NAMESPACE_DC, DC_SERVICES), (NAMESPACE_AC, AC_SERVICES))
        if any(s in family for s in services)
    )
    offered = {schema_id: ns for schema_id, (_rank, ns) in enumerate(ranked, start=1)}
    protocols = [
        new(
            ap.AppProtocol,
            protocol_namespace=ns,
            version_number_major=1,
            version_number_minor=0,
            schema_id=schema_id,
            priority=schema_id,
        )
        for schema_id, ns in offered.items()
    ]
    return new(ap.SupportedAppProtocolReq, app_protocol=protocols), offered


def charge_parameter_discovery_req(
    hdr: m.MessageHeader,
    ev: EvMeasurements,
    profile: CarProfile,
    *,
    dc: bool,
    bpt: bool,
    target_soc: float,
) -> m.DC_ChargeParameterDiscoveryReq | m.AC_ChargeParameterDiscoveryReq:
    sign = profile.discharge_limit_sign
    if dc:
        fields: dict[str, Any] = {
            "ev_maximum_charge_power": rational(ev.max_charge_power_w),
            "ev_minimum_charge_power": rational(0.0),
            "ev_maximum_charge_current": rational(profile.dc_max_charge_current_a),
            "ev_minimum_charge_current": rational(0.0),
            "ev_maximum_voltage": rational(ev.max_voltage_v),
            "ev_minimum_voltage": rational(ev.min_voltage_v),
            "target_soc": pct(target_soc),
        }
        if not bpt:
            mode = new(m.DC_CPDReqEnergyTransferMode, **fields)
            return new(
                m.DC_ChargeParameterDiscoveryReq, header=hdr, dc_cpd_req_energy_transfer_mode=mode
            )
        discharge_a = min(
            profile.dc_max_discharge_current_a,
            ev.max_discharge_power_w / max(ev.battery_voltage_v, 1.0),
        )
        bpt_mode = new(
            m.BPT_DC_CPDReqEnergyTransferMode,
            **fields,
            ev_maximum_discharge_power=rational(sign * ev.max_discharge_power_w),
            ev_minimum_discharge_power=rational(0.0),
            ev_maximum_discharge_current=rational(sign * discharge_a),
            ev_minimum_discharge_current=rational(0.0),
        )
        return new(
            m.DC_ChargeParameterDiscoveryReq,
            header=hdr,
            bpt_dc_cpd_req_energy_transfer_mode=bpt_mode,
        )
    ac: dict[str, Any] = {
        "ev_maximum_charge_power": rational(ev.ac_max_charge_power_w),
        "ev_minimum_charge_power": rational(ev.ac_min_power_w),
    }
    if not bpt:
        ac_mode = new(m.AC_CPDReqEnergyTransferMode, **ac)
        return new(
            m.AC_ChargeParameterDiscoveryReq, header=hdr, ac_cpd_req_energy_transfer_mode=ac_mode
        )
    bpt_ac = new(
        m.BPT_AC_CPDReqEnergyTransferMode,
        **ac,
        ev_maximum_discharge_power=rational(sign * ev.ac_max_discharge_power_w),
        ev_minimum_discharge_power=rational(sign * ev.ac_min_power_w),
    )
    return new(
        m.AC_ChargeParameterDiscoveryReq, header=hdr, bpt_ac_cpd_req_energy_transfer_mode=bpt_ac
    )


def schedule_exchange_req(
    hdr: m.MessageHeader,
    profile: CarProfile,
    controls: CarControls,
    er: EnergyRequests,
    *,
    departure_s: int | None,
    target_soc: float,
    bpt: bool,
) -> m.ScheduleExchangeReq:
    energy = {
        "ev_target_energy_request": rational(er.target_wh),
        "ev_maximum_energy_request": rational(er.maximum_wh),
        "ev_minimum_energy_request": rational(er.minimum_wh),
    }
    points = profile.max_supporting_points
    if profile.control_mode == "scheduled":
        sched = new(m.Scheduled_SEReqControlMode, departure_time=departure_s, **energy)
        return new(
            m.ScheduleExchangeReq,
            header=hdr,
            maximum_supporting_points=points,
            scheduled_se_req_control_mode=sched,
        )
    v2x: dict[str, Any] = {}
    if bpt:
        v2x = {
            "ev_maximum_v2_x_energy_request": rational(er.v2x_maximum_wh),
            "ev_minimum_v2_x_energy_request": rational(er.v2x_minimum_wh),
        }
    dyn = new(
        m.Dynamic_SEReqControlMode,
        departure_time=NO_DEPARTURE_S if departure_s is None else departure_s,
        minimum_soc=pct(controls.min_soc_pct),
        target_soc=pct(target_soc),
        **energy,
        **v2x,
    )
    return new(
        m.ScheduleExchangeReq,
        header=hdr,
        maximum_supporting_points=points,
        dynamic_se_req_control_mode=dyn,
    )


def _profile_entries(entries: list[tuple[int, float]]) -> m.EVPowerProfileEntryList:
    items = [
        new(m.PowerScheduleEntry, duration=duration, power=rational(power))
        for duration, power in entries[:2048]
    ]
    return new(m.EVPowerProfileEntryList, ev_power_profile_entry=items)


def power_delivery_start_req(
    hdr: m.MessageHeader,
    *,
    bpt: bool,
    discharge: bool,
    schedule: ScheduleTupleInfo | None,
    cap_w: float,
    departure_s: int | None,
) -> m.PowerDeliveryReq:
    """PowerDelivery(Start) with the EV power profile: Scheduled references the chosen
    tuple and stays within it; Dynamic announces the planned power until departure."""
    if schedule is not None:
        entries = schedule.profile_entries(discharge and schedule.can_discharge, cap_w)
        control: dict[str, Any] = {
            "scheduled_evppt_control_mode": new(
                m.Scheduled_EVPPTControlMode,
                selected_schedule_tuple_id=schedule.tuple_id,
                # optional in the XSD, but some SECCs require it; the car stays
                # within the schedule, so any PowerTolerance is acceptable
                power_tolerance_acceptance=m.PowerToleranceAcceptance.PowerToleranceConfirmed,
            )
        }
    else:
        entries = [(departure_s or 3600, -cap_w if discharge else cap_w)]
        control = {"dynamic_evppt_control_mode": new(m.Dynamic_EVPPTControlMode)}
    profile = new(
        m.EVPowerProfile,
        time_anchor=0,
        **control,
        ev_power_profile_entries=_profile_entries(entries),
    )
    channel = None
    if bpt:
        channel = m.ChannelSelection.Discharge if discharge else m.ChannelSelection.Charge
    return new(
        m.PowerDeliveryReq,
        header=hdr,
        ev_processing=m.Processing.Finished,
        charge_progress=m.ChargeProgress.Start,
        ev_power_profile=profile,
        bpt_channel_selection=channel,
    )


def power_delivery_stop_req(hdr: m.MessageHeader) -> m.PowerDeliveryReq:
    return new(
        m.PowerDeliveryReq,
        header=hdr,
        ev_processing=m.Processing.Finished,
        charge_progress=m.ChargeProgress.Stop,
    )


def schedule_renegotiation_req(hdr: m.MessageHeader) -> m.PowerDeliveryReq:
    """From the charge loop: ScheduleExchange follows (FACTS.md "Session sequence")."""
    return new(
        m.PowerDeliveryReq,
        header=hdr,
        ev_processing=m.Processing.Finished,
        charge_progress=m.ChargeProgress.ScheduleRenegotiation,
    )


@dataclass(frozen=True, slots=True)
class LoopInputs:
    """Everything one charge-loop request is made of."""

    hdr: m.MessageHeader
    ev: EvMeasurements
    controls: CarControls
    profile: CarProfile
    bpt: bool
    limits: Limits
    energy: EnergyRequests
    winding_down: bool
    departure_s: int | None
    target_soc: float
    target_current_a: float = 0.0  # DC Scheduled: the car's own target


def display_parameters(x: LoopInputs) -> m.DisplayParameters:
    return new(
        m.DisplayParameters,
        present_soc=max(0, min(100, math.floor(x.ev.soc_pct))),
        minimum_soc=pct(x.controls.min_soc_pct),
        target_soc=pct(x.target_soc),
        charging_complete=x.ev.soc_pct >= x.target_soc,
        battery_energy_capacity=rational(x.ev.capacity_wh),
    )


def _energy(x: LoopInputs) -> dict[str, Any]:
    er, zero = x.energy, x.winding_down
    return {
        "ev_target_energy_request": rational(0.0 if zero else er.target_wh),
        "ev_maximum_energy_request": rational(0.0 if zero else er.maximum_wh),
        "ev_minimum_energy_request": rational(0.0 if zero else min(0.0, er.minimum_wh)),
    }


def _v2x(x: LoopInputs) -> dict[str, Any]:
    return {
        "ev_maximum_v2_x_energy_request": rational(x.energy.v2x_maximum_wh),
        "ev_minimum_v2_x_energy_request": rational(x.energy.v2x_minimum_wh),
    }


def dc_charge_loop_req(x: LoopInputs) -> m.DC_ChargeLoopReq:
    sign, lim, ev = x.profile.discharge_limit_sign, x.limits, x.ev
    limits = {
        "ev_maximum_charge_power": rational(lim.charge_power_w),
        "ev_minimum_charge_power": rational(0.0),
        "ev_maximum_charge_current": rational(lim.charge_current_a),
        "ev_maximum_voltage": rational(ev.max_voltage_v),
        "ev_minimum_voltage": rational(ev.min_voltage_v),
    }
    bpt_limits = {
        "ev_maximum_discharge_power": rational(sign * lim.discharge_power_w),
        "ev_minimum_discharge_power": rational(0.0),
        "ev_maximum_discharge_current": rational(sign * lim.discharge_current_a),
    }
    mode: dict[str, Any]
    if x.profile.control_mode == "dynamic":
        fields = {"departure_time": x.departure_s, **_energy(x), **limits}
        if x.bpt:
            cls: Any = m.BPT_Dynamic_DC_CLReqControlMode
            mode = {
                "bpt_dynamic_dc_cl_req_control_mode": new(cls, **fields, **bpt_limits, **_v2x(x))
            }
        else:
            mode = {"dynamic_dc_cl_req_control_mode": new(m.Dynamic_DC_CLReqControlMode, **fields)}
    else:
        fields = {
            **_energy(x),
            "ev_target_current": rational(x.target_current_a),
            "ev_target_voltage": rational(ev.max_voltage_v),
            **limits,
        }
        if x.bpt:
            cls = m.BPT_Scheduled_DC_CLReqControlMode
            mode = {"bpt_scheduled_dc_cl_req_control_mode": new(cls, **fields, **bpt_limits)}
        else:
            cls = m.Scheduled_DC_CLReqControlMode
            mode = {"scheduled_dc_cl_req_control_mode": new(cls, **fields)}
    return new(
        m.DC_ChargeLoopReq,
        header=x.hdr,
        display_parameters=display_parameters(x),
        meter_info_requested=False,
        ev_present_voltage=rational(ev.battery_voltage_v),
        **mode,
    )


def ac_charge_loop_req(x: LoopInputs) -> m.AC_ChargeLoopReq:
    sign, lim, ev = x.profile.discharge_limit_sign, x.limits, x.ev
    limits = {
        "ev_maximum_charge_power": rational(lim.charge_power_w),
        "ev_minimum_charge_power": rational(min(ev.ac_min_power_w, lim.charge_power_w)),
        "ev_present_active_power": rational(ev.ac_power_w),
    }
    bpt_limits = {
        "ev_maximum_discharge_power": rational(sign * lim.discharge_power_w),
        "ev_minimum_discharge_power": rational(
            sign * min(ev.ac_min_power_w, lim.discharge_power_w)
        ),
    }
    mode: dict[str, Any]
    cls: Any
    if x.profile.control_mode == "dynamic":
        fields = {
            "departure_time": x.departure_s,
            **_energy(x),
            **limits,
            "ev_present_reactive_power": rational(0.0),
        }
        if x.bpt:
            cls = m.BPT_Dynamic_AC_CLReqControlMode
            mode = {
                "bpt_dynamic_ac_cl_req_control_mode": new(cls, **fields, **bpt_limits, **_v2x(x))
            }
        else:
            mode = {"dynamic_ac_cl_req_control_mode": new(m.Dynamic_AC_CLReqControlMode, **fields)}
    else:
        fields = {**_energy(x), **limits}
        if x.bpt:
            cls = m.BPT_Scheduled_AC_CLReqControlMode
            mode = {"bpt_scheduled_ac_cl_req_control_mode": new(cls, **fields, **bpt_limits)}
        else:
            cls = m.Scheduled_AC_CLReqControlMode
            mode = {"scheduled_ac_cl_req_control_mode": new(cls, **fields)}
    return new(
        m.AC_ChargeLoopReq,
        header=x.hdr,
        display_parameters=display_parameters(x),
        meter_info_requested=False,
        **mode,
    )
