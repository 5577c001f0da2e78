"""Duty cycle <-> current, IEC 61851-1 Table A.8 (EVSE side) and A.9 (EV side)."""

from __future__ import annotations

MIN_BASIC_CURRENT_A = 6.0
MAX_BASIC_CURRENT_A = 80.0
HLC_DUTY_PCT = 5.0  # IEC 61851-1 A.4: 5 % = digital communication required (ISO 15118)


def duty_for_current(current_a: float) -> float:
    """Duty cycle in % for an offered current, rounded to the board's 0.01 % step.

    6-51 A: D = I / 0.6; 51-80 A: D = I / 2.5 + 64 (IEC 61851-1 Table A.8).
    Raises ValueError below 6 A: basic charging cannot offer less.
    """
    if current_a < MIN_BASIC_CURRENT_A:
        raise ValueError(f"cannot offer {current_a} A: IEC 61851-1 minimum is 6 A")
    current_a = min(current_a, MAX_BASIC_CURRENT_A)
    duty = current_a / 0.6 if current_a <= 51.0 else current_a / 2.5 + 64.0
    return round(duty, 2)


def current_for_duty(duty_pct: float) -> float | None:
    """Current an EV may draw for a duty cycle (IEC 61851-1 Table A.9), or None
    when the duty cycle does not allow basic charging (digital mode, invalid)."""
    if duty_pct < 8.0 or duty_pct > 97.0:
        return None  # < 3 % invalid, 3-7 % digital communication only, > 97 % no charging
    if duty_pct < 10.0:
        return 6.0
    if duty_pct <= 85.0:
        return duty_pct * 0.6
    if duty_pct <= 96.0:
        return (duty_pct - 64.0) * 2.5
    return 80.0
