"""SECC session states and their transition table (ISO 15118-20).

The table is the documentation: ``chargepoint diagram --secc`` renders it.

Theory of operation (SECC view, FACTS.md "Session sequence"): each state names
the request the SECC waits for next. A request that the table does not allow
from the current state is answered with ``FAILED_SequenceError`` and ends the
session ([V2G20-2013] family: "FAILED" ends the session on both sides). Loops
(Authorization, ScheduleExchange, CableCheck, PreCharge while Ongoing, the
charge loop, welding detection) stay in their state; their requests are
answered without a transition.

* WAIT_SAP: TCP/TLS connection up, SupportedAppProtocolReq expected.
* WAIT_SESSION_SETUP -> a new session, or a paused one joined again
  (``OK_OldSessionJoined``: next is ChargeParameterDiscovery, [V2G20-2098]).
* AUTH_SETUP / AUTHORIZATION: EIM only; Ongoing until the EVSE has an
  authorisation (free vend, local start, remote start, Authorize).
* SERVICE_DISCOVERY -> SERVICE_DETAIL (0..n ServiceDetail) -> ServiceSelection.
* CHARGE_PARAMETER -> SCHEDULE_EXCHANGE (Ongoing allowed).
* DC: CABLE_CHECK -> PRE_CHARGE -> POWER_DELIVERY; AC: straight to POWER_DELIVERY.
* CHARGE_LOOP: energy flows; PowerDelivery may interleave (Standby,
  ScheduleRenegotiation back to SCHEDULE_EXCHANGE, Stop).
* DC: WELDING after PowerDelivery(Stop); then SESSION_STOP.
* SessionStop: Terminate or Pause end the connection (ENDED); a paused
  session may be joined again; ServiceRenegotiation goes back to
  SERVICE_DISCOVERY.
* ENDED: the session is over; the adapter closes the connection.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class SeccState(Enum):
    IDLE = "idle"  # no connection
    WAIT_SAP = "wait_sap"
    WAIT_SESSION_SETUP = "wait_session_setup"
    AUTH_SETUP = "auth_setup"
    AUTHORIZATION = "authorization"
    SERVICE_DISCOVERY = "service_discovery"
    SERVICE_DETAIL = "service_detail"
    CHARGE_PARAMETER = "charge_parameter"
    SCHEDULE_EXCHANGE = "schedule_exchange"
    CABLE_CHECK = "cable_check"
    PRE_CHARGE = "pre_charge"
    POWER_DELIVERY = "power_delivery"
    CHARGE_LOOP = "charge_loop"
    WELDING = "welding"
    SESSION_STOP = "session_stop"
    ENDED = "ended"


_S = SeccState
# States in which no energy flows and the EV may end the session with SessionStop.
_STOPPABLE = [
    _S.AUTHORIZATION,
    _S.SERVICE_DISCOVERY,
    _S.SERVICE_DETAIL,
    _S.CHARGE_PARAMETER,
    _S.SCHEDULE_EXCHANGE,
    _S.CABLE_CHECK,
    _S.PRE_CHARGE,
    _S.POWER_DELIVERY,
    _S.WELDING,
    _S.SESSION_STOP,
]
# PowerDelivery(Stop) may come from the loop, or before energy ever flowed.
_POWERED = [_S.PRE_CHARGE, _S.POWER_DELIVERY, _S.CHARGE_LOOP]
_CONNECTED = [s for s in SeccState if s not in (_S.IDLE, _S.ENDED)]

# trigger, source(s), destination. The session fires a trigger only after the
# request was accepted (right type, right session, sane content).
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "connected", "source": [_S.IDLE, _S.ENDED], "dest": _S.WAIT_SAP},
    {"trigger": "protocol_agreed", "source": _S.WAIT_SAP, "dest": _S.WAIT_SESSION_SETUP},
    {"trigger": "session_created", "source": _S.WAIT_SESSION_SETUP, "dest": _S.AUTH_SETUP},
    # [V2G20-2098]: a paused session joined again continues at ChargeParameterDiscovery
    {"trigger": "session_joined", "source": _S.WAIT_SESSION_SETUP, "dest": _S.CHARGE_PARAMETER},
    {"trigger": "auth_setup_done", "source": _S.AUTH_SETUP, "dest": _S.AUTHORIZATION},
    {"trigger": "authorized", "source": _S.AUTHORIZATION, "dest": _S.SERVICE_DISCOVERY},
    {"trigger": "services_listed", "source": _S.SERVICE_DISCOVERY, "dest": _S.SERVICE_DETAIL},
    {"trigger": "service_selected", "source": _S.SERVICE_DETAIL, "dest": _S.CHARGE_PARAMETER},
    {"trigger": "parameters_agreed", "source": _S.CHARGE_PARAMETER, "dest": _S.SCHEDULE_EXCHANGE},
    {"trigger": "schedule_agreed_dc", "source": _S.SCHEDULE_EXCHANGE, "dest": _S.CABLE_CHECK},
    {"trigger": "schedule_agreed_ac", "source": _S.SCHEDULE_EXCHANGE, "dest": _S.POWER_DELIVERY},
    # renegotiation in the loop: the schedule is agreed again, energy resumes
    {"trigger": "schedule_renegotiated", "source": _S.SCHEDULE_EXCHANGE, "dest": _S.POWER_DELIVERY},
    {"trigger": "cable_checked", "source": _S.CABLE_CHECK, "dest": _S.PRE_CHARGE},
    # [V2G20-2005]/[V2G20-2006]: after PreCharge Finished only PowerDelivery may follow
    {"trigger": "pre_charged", "source": _S.PRE_CHARGE, "dest": _S.POWER_DELIVERY},
    {
        "trigger": "power_started",
        "source": [_S.PRE_CHARGE, _S.POWER_DELIVERY, _S.CHARGE_LOOP],  # CHARGE_LOOP: out of Standby
        "dest": _S.CHARGE_LOOP,
    },
    {"trigger": "renegotiate", "source": _S.CHARGE_LOOP, "dest": _S.SCHEDULE_EXCHANGE},
    {"trigger": "power_stopped_dc", "source": _POWERED, "dest": _S.WELDING},
    {"trigger": "power_stopped_ac", "source": _POWERED, "dest": _S.SESSION_STOP},
    {"trigger": "service_renegotiation", "source": _STOPPABLE, "dest": _S.SERVICE_DISCOVERY},
    {"trigger": "stopped", "source": _STOPPABLE, "dest": _S.ENDED},
    # FAILED responses, timeouts, CP or EVSE faults, lost connections
    {"trigger": "abort", "source": _CONNECTED, "dest": _S.ENDED},
    {"trigger": "disconnected", "source": [*_CONNECTED, _S.ENDED], "dest": _S.IDLE},
]
