"""Thresholds and timeouts of the safety path: the one place their defaults live.

``[safety]`` in the configuration (:class:`chargepoint.config.SafetyConfig`)
has exactly these fields, with these defaults, and is turned into one
:class:`SafetyLimits` per EVSE by the composition root; a test fails when a
configuration field reaches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_FAULT_PULSE_F_S = 4.0  # ISO 15118-3 / IEC 61851-1: a fault is signalled with F for >= 4 s


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    # IEC 61851-23 6.3.1.105: fault below 100 ohm/V, warning below 500 ohm/V (1000 V class)
    isolation_fault_ohm: float = 100_000.0
    isolation_warning_ohm: float = 500_000.0
    over_temperature_c: float = 85.0  # board or socket temperature
    # DC output voltage that latches OVER_VOLTAGE; None: 5 % above the power stage's
    # rated maximum (IEC 61851-23 6.3.1.106 wants the output cut before it harms the EV)
    over_voltage_v: float | None = None
    board_status_timeout_s: float = 0.3  # the board reports every 100 ms
    power_stage_status_timeout_s: float = 0.5
    contactor_close_timeout_s: float = 1.0  # well inside the 3 s of IEC 61851-1 A.6 seq 4
    contactor_open_timeout_s: float = 0.1  # IEC 61851-1 A.6 seq 8.1: open within 100 ms
    fault_pulse_f_s: float = MIN_FAULT_PULSE_F_S  # CP held at F on a fault
    # a fault latched this often within the window needs a service reset
    fault_repeat_limit: int = 3
    fault_repeat_window_s: float = 600.0

    def __post_init__(self) -> None:
        if self.fault_pulse_f_s < MIN_FAULT_PULSE_F_S:
            raise ValueError(f"fault_pulse_f_s must be >= {MIN_FAULT_PULSE_F_S:g} s")
        if self.isolation_warning_ohm <= self.isolation_fault_ohm:
            raise ValueError("isolation_warning_ohm must be above isolation_fault_ohm")
