"""Typed inputs of the SECC session (sans-I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from chargepoint.iec61851.cp_state import CpState
from chargepoint.power.arbitration import PowerLimits
from chargepoint.power.grid_schedule import NO_SCHEDULE, GridSchedule


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """A TCP/TLS connection from an EVCC was accepted."""

    peer: str
    tls: bool


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes read from the connection; ``b""`` means the peer closed it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection broke (reset, TLS error) without a clean end."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class EvseView:
    """What the EVSE side knows right now, as the session may use it.

    Updated by the adapter from the EVSE controller, the power stage, the
    isolation monitor and the meter; the session never asks hardware itself.
    """

    cp_state: CpState = CpState.A
    pwm_on: bool = False  # 5 % PWM is driven (HLC, IEC 61851-1 A.4)
    contactors_closed: bool = False  # mirror contacts
    faulted: bool = False  # a fault is latched: no energy
    authorized: bool = False  # EIM: free vend, local or remote start, Authorize
    present_voltage_v: float = 0.0  # at the EVSE output (DC) / grid voltage (AC)
    present_current_a: float = 0.0  # signed: + to the EV
    isolation_ohm: float | None = None  # None: not measuring / not settled
    isolation_device_fault: bool = False
    import_energy_wh: float | None = None  # meter: to the EV
    export_energy_wh: float | None = None  # meter: from the EV
    meter_id: str = ""


@dataclass(frozen=True, slots=True)
class EvseChanged:
    view: EvseView


@dataclass(frozen=True, slots=True)
class LimitsChanged:
    """The arbitrated limits of the power path (config, hardware, operator, CSMS)."""

    limits: PowerLimits
    setpoint_w: float | None = None  # requested operating point (Dynamic mode), signed
    #: the CSMS's limits ahead (Scheduled mode offers them as ScheduleTuples)
    grid: GridSchedule = NO_SCHEDULE
    #: ``limits`` without the CSMS's limit in force now (``grid`` shapes the offer
    #: from these); None: the same as ``limits``
    base: PowerLimits | None = None


@dataclass(frozen=True, slots=True)
class CsmsNeedsAnswered:
    """The CSMS answered (or could not be asked about) the EV's charging needs (OCPP
    K15): ``schedule_coming`` when it said Accepted/Processing and its TxProfile is
    awaited; the session holds ScheduleExchange Ongoing for it, within its bound."""

    schedule_coming: bool


@dataclass(frozen=True, slots=True)
class StopRequested:
    """EVSE-initiated end of the energy transfer (operator, CSMS, unavailability)."""

    reason: str = "local"


Event = (
    ConnectionOpened
    | DataReceived
    | ConnectionLost
    | EvseChanged
    | LimitsChanged
    | StopRequested
    | CsmsNeedsAnswered
)
