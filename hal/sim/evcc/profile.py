"""What the simulated car is (profile), what its driver wants (controls) and what
it measures on its own side of the plant (measurements).

Service names and IDs, control-mode codes and timing defaults follow
../shared/iso15118-20/FACTS.md ("Session sequence", "Timing").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

from chargepoint.iec61851.cp_state import CpState

ServiceName = Literal["AC", "DC", "AC_BPT", "DC_BPT"]
ControlMode = Literal["scheduled", "dynamic"]

#: Energy transfer service IDs (FACTS.md "Service IDs").
SERVICE_IDS: Final[dict[str, int]] = {"AC": 1, "DC": 2, "AC_BPT": 5, "DC_BPT": 6}
SERVICE_NAMES: Final[dict[int, str]] = {v: k for k, v in SERVICE_IDS.items()}
DC_SERVICES: Final = frozenset({"DC", "DC_BPT"})
AC_SERVICES: Final = frozenset({"AC", "AC_BPT"})
BPT_SERVICES: Final = frozenset({"AC_BPT", "DC_BPT"})

NAMESPACE_DC: Final = "urn:iso:std:iso:15118:-20:DC"
NAMESPACE_AC: Final = "urn:iso:std:iso:15118:-20:AC"

#: ServiceDetail parameter ``ControlMode``: 1 Scheduled, 2 Dynamic (FACTS.md).
CONTROL_MODE_CODES: Final[dict[str, int]] = {"scheduled": 1, "dynamic": 2}


class CarFault(Enum):
    """Misbehaviour the car can be told to show, to test the charger."""

    OUT_OF_SEQUENCE = "out_of_sequence"
    """In the charge loop, send an AuthorizationSetupReq instead of the loop request."""
    SILENT = "silent"
    """Stop sending requests, keep the connection and the hardware as they are."""
    DISAPPEAR = "disappear"
    """Drop the TCP connection mid-session without SessionStop."""


@dataclass(frozen=True)
class CarProfile:
    """What the car is and prefers. Immutable for a run.

    Timing defaults are the -20 EVCC values of FACTS.md "Timing":
    2 s per response (ServiceDetail 5 s), 0.5 s in the charge loop, 60 s
    ongoing, 20 s communication setup, 40 s cable check, 10 s pre-charge. SDP:
    250 ms per request, at most 50 requests (the SDP request repetition of
    ISO 15118-2 carried over into -20; the same values are used by the open
    Python reference EVCC: ``SDP_REQ = 0.25``, ``SDP_MAX_REQUEST_COUNTER = 50``).
    """

    services: tuple[str, ...] = ("DC_BPT", "DC")  # preference order
    control_mode: ControlMode = "dynamic"
    tls: bool = True
    # -20 requires TLS ([V2G20-2356]); accept a plain-TCP SDP answer only if set
    allow_plain_tcp_fallback: bool = False
    evcc_id: bytes = bytes.fromhex("02005e10a1b2")  # MAC-like; EVCCID is its hex text
    loop_interval_s: float = 0.1  # pause between charge-loop (and Ongoing) requests
    charge_loop_timeout_s: float = 0.5
    response_timeout_s: float = 2.0
    service_detail_timeout_s: float = 5.0
    ongoing_timeout_s: float = 60.0
    communication_setup_timeout_s: float = 20.0
    cable_check_timeout_s: float = 40.0
    pre_charge_timeout_s: float = 10.0
    sdp_timeout_s: float = 0.25
    sdp_max_requests: int = 50
    cp_timeout_s: float = 3.0  # S2 closed but CP not C/D after this: no 5 % PWM offered
    # sign of the discharge limits the car sends (+1 or -1; FACTS.md: both are seen)
    discharge_limit_sign: int = -1
    dc_max_charge_current_a: float = 250.0
    dc_max_discharge_current_a: float = 125.0
    pre_charge_tolerance_v: float = 20.0
    voltage_mismatch_tolerance_v: float = 25.0  # EVSEPresentVoltage vs the inlet
    welding_voltage_v: float = 60.0
    welding_max_requests: int = 20
    wind_down_max_s: float = 2.0  # ramp the power to 0 before PowerDelivery(Stop)
    max_supporting_points: int = 1024
    # missing/unknown ServiceDetail parameters: CarError (True) or a warning
    strict_service_parameters: bool = True
    # after OK_OldSessionJoined: ChargeParameterDiscovery ([V2G20-2098], default)
    # or the whole authorisation/service sequence again
    resume_reauthorize: bool = False
    # grace after the car withdrew a discharge (or charge) allowance, for ramps
    limit_grace_s: float = 2.0
    evse_pause_max_wait_s: float = 60.0  # EVSE-initiated pause: wait for a wake-up
    fault_hold_s: float = 2.0  # DISAPPEAR: keep CP/contactor this long afterwards
    # renegotiate the schedule itself once, after this many charge loops (tests the
    # SECC's EV-initiated path); None: only when the SECC asks
    renegotiate_after_loops: int | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.services:
            problems.append("services: empty")
        for name in self.services:
            if name not in SERVICE_IDS:
                problems.append(f"services: unknown service {name!r}")
        if len(set(self.services)) != len(self.services):
            problems.append("services: duplicates")
        if self.control_mode not in CONTROL_MODE_CODES:
            problems.append(f"control_mode: {self.control_mode!r}")
        if self.discharge_limit_sign not in (-1, 1):
            problems.append("discharge_limit_sign must be -1 or +1")
        if len(self.evcc_id) != 6:
            problems.append("evcc_id must be 6 bytes (MAC-like)")
        if not 12 <= self.max_supporting_points <= 1024:
            problems.append("max_supporting_points must be in 12..1024")
        if self.sdp_max_requests < 1:
            problems.append("sdp_max_requests must be >= 1")
        after = self.renegotiate_after_loops
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or after < 1
        ):
            problems.append(
                f"renegotiate_after_loops must be None or an integer >= 1, got {after!r}"
            )
        for name in (
            "loop_interval_s",
            "charge_loop_timeout_s",
            "response_timeout_s",
            "service_detail_timeout_s",
            "ongoing_timeout_s",
            "communication_setup_timeout_s",
            "cable_check_timeout_s",
            "pre_charge_timeout_s",
            "sdp_timeout_s",
            "cp_timeout_s",
            "dc_max_charge_current_a",
            "dc_max_discharge_current_a",
            "pre_charge_tolerance_v",
            "wind_down_max_s",
            "limit_grace_s",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                problems.append(f"{name} must be a finite number >= 0, got {value}")
        if problems:
            raise ValueError("CarProfile: " + "; ".join(problems))

    @property
    def evccid_text(self) -> str:
        """EVCCID as sent: -20 types it as a string, so the MAC goes as hex text."""
        return self.evcc_id.hex().upper()


@dataclass
class CarControls:
    """What the driver (or a test) wants; mutable, read by the car between messages.

    Not thread-safe: change it from the event loop the car runs on (e.g. the
    charger's control socket handler).
    """

    target_soc_pct: float = 80.0
    min_soc_pct: float = 20.0  # MinimumSOC: the driver wants at least this
    departure_in_s: float | None = 7200.0  # seconds from when it was set
    discharge: bool = False  # offer/ask for discharge (BPT services only)
    discharge_power_w: float | None = None  # cap of the discharge power (magnitude)
    pause: bool = False  # pause now; clear it to resume
    stop: bool = False  # end the session normally
    fault: CarFault | None = None
    stop_after_loops: int | None = None  # end normally after this many charge loops


@dataclass(frozen=True, slots=True)
class EvMeasurements:
    """The car's own view of its side of the plant, sampled by the runner."""

    soc_pct: float
    battery_voltage_v: float  # terminal voltage
    battery_current_a: float  # + charging
    inlet_voltage_v: float  # DC inlet (the EVSE output when the cable is live)
    capacity_wh: float
    min_voltage_v: float
    max_voltage_v: float
    reserve_soc_pct: float  # below this the BMS allows no discharge (V2X minimum)
    charge_power_limit_w: float  # BMS, now
    discharge_power_limit_w: float  # BMS, now (magnitude)
    max_charge_power_w: float  # rating
    max_discharge_power_w: float  # rating
    cp_state: CpState = CpState.B
    ac_voltage_v: float = 230.0
    ac_phases: int = 3
    ac_power_w: float = 0.0  # on-board charger, AC side, + to the EV
    ac_max_charge_power_w: float = 11_000.0
    ac_max_discharge_power_w: float = 11_000.0
    ac_min_power_w: float = 0.0

    @property
    def cp_closed(self) -> bool:
        return self.cp_state in (CpState.C, CpState.D)
