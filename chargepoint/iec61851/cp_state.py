"""Control pilot states as measured on the CP line (IEC 61851-1 Table A.3).

The core owns this vocabulary; the HAL reports in it.
"""

from __future__ import annotations

from enum import Enum


class CpState(Enum):
    """Vehicle-side state, from the positive CP plateau voltage."""

    A = "A"  # +12 V: no vehicle connected
    B = "B"  # +9 V: vehicle connected, not ready
    C = "C"  # +6 V: vehicle ready, no ventilation needed
    D = "D"  # +3 V: vehicle ready, ventilation required
    E = "E"  # 0 V: CP shorted to PE or no supply
    F = "F"  # -12 V: EVSE (our side) not available, or error reading


class PilotOutput(Enum):
    """What the EVSE drives onto the CP line."""

    X1 = "X1"  # constant +12 V, no PWM (duty 100 %)
    PWM = "PWM"  # 1 kHz PWM with a duty cycle
    F = "F"  # constant -12 V: EVSE not available
