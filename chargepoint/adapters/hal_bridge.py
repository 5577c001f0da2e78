"""Translate HAL reports into core events (hardware vocabulary -> core vocabulary)."""

from __future__ import annotations

from chargepoint.evse.events import IsolationObserved, PilotObserved, PowerStageObserved
from chargepoint.safety.faults import FaultKind
from hal.isolation import IsolationReading
from hal.pilot import BoardFault, PilotStatus
from hal.power_stage import PowerMode, PowerStageFault, PowerStageStatus

_BOARD_FAULTS: dict[BoardFault, FaultKind] = {
    BoardFault.RCD_AC: FaultKind.RCD_AC,
    BoardFault.RCD_DC: FaultKind.RCD_DC,
    BoardFault.DIODE: FaultKind.DIODE,
    BoardFault.OVER_TEMPERATURE: FaultKind.OVER_TEMPERATURE,
    BoardFault.CONTACTOR_WELDED: FaultKind.CONTACTOR_WELDED,
    BoardFault.CONTACTOR_STUCK_OPEN: FaultKind.CONTACTOR_STUCK_OPEN,
    BoardFault.LOCK_FAULT: FaultKind.LOCK,
    BoardFault.HOST_KEEPALIVE_LOST: FaultKind.BOARD_KEEPALIVE_LOST,
    BoardFault.OVER_VOLTAGE: FaultKind.OVER_VOLTAGE,
    BoardFault.INTERNAL: FaultKind.BOARD_INTERNAL,
}


def board_fault_kinds(flags: BoardFault) -> frozenset[FaultKind]:
    return frozenset(kind for flag, kind in _BOARD_FAULTS.items() if flag in flags)


def pilot_event(status: PilotStatus) -> PilotObserved:
    faults = board_fault_kinds(status.faults)
    detail = f"board flags {status.faults!r}" if faults else ""
    return PilotObserved(
        cp_state=status.cp_state,
        output=status.output,
        contactor_closed=status.contactor_closed,
        pp_ampacity_a=status.pp_ampacity_a,
        temperature_c=status.temperature_c,
        locked=status.locked,
        faults=faults,
        detail=detail,
    )


def power_stage_event(status: PowerStageStatus) -> PowerStageObserved:
    faults = (
        frozenset({FaultKind.POWER_STAGE}) if status.faults != PowerStageFault.NONE else frozenset()
    )
    detail = f"power stage flags {status.faults!r}" if faults else ""
    return PowerStageObserved(
        voltage_v=status.voltage_v,
        current_a=status.current_a,
        on=status.mode is not PowerMode.OFF,
        faults=faults,
        detail=detail,
    )


def isolation_event(reading: IsolationReading) -> IsolationObserved:
    return IsolationObserved(reading.resistance_ohm, reading.device_fault)
