"""What the SECC offers and how patient it is (from the configuration)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ServiceId(IntEnum):
    """Energy transfer service IDs (ISO 15118-20 Table "ServiceID", FACTS.md)."""

    AC = 1
    DC = 2
    WPT = 3
    DC_ACDP = 4
    AC_BPT = 5
    DC_BPT = 6
    DC_ACDP_BPT = 7
    MCS = 8
    MCS_BPT = 9
    AC_DER = 10


DC_SERVICES = frozenset({ServiceId.DC, ServiceId.DC_BPT})
AC_SERVICES = frozenset({ServiceId.AC, ServiceId.AC_BPT})
BPT_SERVICES = frozenset({ServiceId.DC_BPT, ServiceId.AC_BPT})

NAMESPACE_DC = "urn:iso:std:iso:15118:-20:DC"
NAMESPACE_AC = "urn:iso:std:iso:15118:-20:AC"


@dataclass(frozen=True, slots=True)
class SeccTimings:
    """ISO 15118-20 timing (FACTS.md "Timing"); configurable for lab cars."""

    sequence_timeout_s: float = 60.0  # V2G_SECC_Sequence_Timeout
    charge_loop_timeout_s: float = 0.5  # after a charge-loop response [V2G20-1500]/[V2G20-1502]
    communication_setup_timeout_s: float = 20.0  # connection to SessionSetup done
    ongoing_timeout_s: float = 60.0  # Authorization/ScheduleExchange/CableCheck Ongoing
    cable_check_timeout_s: float = 38.0  # EV gives up after 40 s: finish before
    pre_charge_timeout_s: float = 9.0  # EV gives up after 10 s
    welding_voltage_v: float = 60.0  # DC output considered discharged below this


@dataclass(frozen=True, slots=True)
class SeccSettings:
    evse_id: str  # EVSEID for SessionSetupRes (e.g. "DE*ABC*E1234*1")
    services: tuple[ServiceId, ...]  # offered, in this order
    control_modes: tuple[str, ...] = ("scheduled", "dynamic")
    timings: SeccTimings = SeccTimings()
    # DC output / AC supply characteristics reported to the EV
    nominal_voltage_v: float = 400.0  # AC: line-neutral; DC: nominal output
    ac_phases: int = 3
    ac_frequency_hz: float = 50.0
    min_voltage_v: float = 150.0  # DC output range
    max_voltage_v: float = 920.0
    min_current_a: float = 0.0
    cable_check_current_a: float = 2.0  # IEC 61851-23: test current limit
    pre_charge_current_a: float = 2.0
    pre_charge_tolerance_v: float = 20.0
    isolation_fault_ohm: float = 100_000.0  # IEC 61851-23: fault below 100 kohm
    isolation_warning_ohm: float = 500_000.0
    free_service: bool = True
    currency: str = "EUR"
    energy_price_per_kwh: float = 0.30  # Pricing: absolute price schedule offered
    # Scheduled mode: one schedule of this length (s), repeated per tuple
    schedule_duration_s: int = 86_400
    # Scheduled BPT: a discharge window offered in the second tuple
    discharge_window_s: int = 3_600
    allow_pause: bool = True
    # OCPP K15: hold ScheduleExchange Ongoing this long for the CSMS's TxProfile
    # after NotifyEVChargingNeeds (0: no CSMS; well below the EV's 60 s Ongoing timer)
    csms_schedule_wait_s: float = 0.0
    # EVSENotification ScheduleRenegotiation: NotificationMaxDelay (s) given to the EV
    renegotiation_max_delay_s: int = 10
    service_renegotiation: bool = True
    meter_id: str = "SIM-METER"

    def __post_init__(self) -> None:
        if not self.services:
            raise ValueError("no energy transfer service offered")
        if not 0.0 <= self.csms_schedule_wait_s <= 50.0:
            raise ValueError("csms_schedule_wait_s must be 0..50 s (the EV gives up at 60 s)")
        if not 1 <= self.renegotiation_max_delay_s <= 60:
            raise ValueError("renegotiation_max_delay_s must be 1..60 s")
        for mode in self.control_modes:
            if mode not in ("scheduled", "dynamic"):
                raise ValueError(f"unknown control mode {mode!r}")
