"""EVSE states for IEC 61851-1 basic charging and their transition table.

The table is the documentation: ``chargepoint diagram`` renders it.

Theory of operation (IEC 61851-1 Annex A, Table A.6 sequences):

* IDLE: no vehicle (CP A); the CP line is at X1 (+12 V, no PWM).
* CONNECTED: vehicle present (B1/C1). No PWM: not authorised, unavailable,
  or stopped. The EV must not draw current.
* READY: PWM offered (B2): the EV may request energy by going to C (or D).
* CHARGING: the EV is in C (or D with ventilation) and PWM is on: contactor
  permission is granted (close within 3 s, seq 4). With ISO 15118 (5 % PWM)
  only after the session's PowerDelivery(Start) ([V2G20-1317]); its Stop (or
  the session's end) goes back to READY via ``hlc_stop``.
* STOPPING: we removed PWM while the EV is still in C (seq 10.1): permission is
  held until the EV opens S2 (C->B, seq 8.1: open within 100 ms) or 6 s pass
  (seq 10.2: force off).
* FAULT: a fault is latched: power stage Off, permission withdrawn, CP at F
  (EVSE not available) for at least 4 s, then X1 so an unplug can be seen.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class EvseState(Enum):
    IDLE = "idle"
    CONNECTED = "connected"
    READY = "ready"
    CHARGING = "charging"
    STOPPING = "stopping"
    FAULT = "fault"


_S = EvseState
_ALIVE = [_S.CONNECTED, _S.READY, _S.CHARGING, _S.STOPPING]

# trigger, source(s), destination. Guards live in the controller, which fires
# a trigger only when its preconditions hold; the table says where it may go.
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "ev_plugged", "source": _S.IDLE, "dest": _S.CONNECTED},  # A -> B
    {"trigger": "ev_unplugged", "source": _ALIVE, "dest": _S.IDLE},  # -> A
    {"trigger": "offer", "source": _S.CONNECTED, "dest": _S.READY},  # B1 -> B2 (PWM on)
    {"trigger": "ev_requests", "source": _S.READY, "dest": _S.CHARGING},  # B2 -> C2, seq 4
    {"trigger": "ev_pauses", "source": _S.CHARGING, "dest": _S.READY},  # C2 -> B2, seq 8.1
    # ISO 15118 PowerDelivery(Stop) or a failed session: power Off, then contactors open
    {"trigger": "hlc_stop", "source": _S.CHARGING, "dest": _S.READY},
    {"trigger": "withdraw", "source": _S.READY, "dest": _S.CONNECTED},  # B2 -> B1 (PWM off)
    {"trigger": "withdraw", "source": _S.CHARGING, "dest": _S.STOPPING},  # C2 -> C1, seq 10.1
    {"trigger": "ev_stopped", "source": _S.STOPPING, "dest": _S.CONNECTED},  # C1 -> B1
    {"trigger": "stop_timeout", "source": _S.STOPPING, "dest": _S.CONNECTED},  # seq 10.2
    {"trigger": "fault", "source": [_S.IDLE, *_ALIVE], "dest": _S.FAULT},
    {"trigger": "recover", "source": _S.FAULT, "dest": _S.IDLE},
]
