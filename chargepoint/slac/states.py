"""SECC-side SLAC states (ISO 15118-3 clause 9 / Annex A) and their transition tables.

Two machines, both rendered from these tables:

* :class:`MatcherState`, one per connector: is a car there, is matching
  possible, has one car matched us and joined our logical network (AVLN)?
* :class:`SessionState`, one per car heard (keyed by its MAC and RunID): the
  parameter exchange, the sounding, the attenuation report and the match
  request. Several cars may be heard at once through crosstalk; each is
  answered, and the car itself picks the EVSE with the lowest attenuation.

Guards live in :mod:`chargepoint.slac.matcher`, which fires a trigger only
when its preconditions hold; the tables say where a trigger may go.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class MatcherState(Enum):
    IDLE = "idle"  # no car (CP A), or not started
    WAITING = "waiting"  # car present, unmatched: TT_EVSE_SLAC_init / sessions running
    EF_STEP = "ef_step"  # waking the car: CP at E/F for T_step_EF [V2G3-M06-07]
    MATCHED = "matched"  # CM_SLAC_MATCH.CNF sent; waiting for the car to join (TT_match_join)
    LINKED = "linked"  # the car joined our AVLN: D-LINK_READY
    FAILED = "failed"  # gave up; X1 requested; waits for unplug or a restart
    LEFT = "left"  # the logical network was left on request (D-LINK_TERMINATE)


_M = MatcherState
_ALIVE = [_M.WAITING, _M.EF_STEP, _M.MATCHED, _M.LINKED]
_PRESENT = [*_ALIVE, _M.FAILED, _M.LEFT]

MATCHER_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "plugged", "source": _M.IDLE, "dest": _M.WAITING},  # CP A -> B/C/D
    {"trigger": "unplugged", "source": _PRESENT, "dest": _M.IDLE},  # CP -> A [V2G3-M09-17]
    # no CM_SLAC_PARM.REQ within TT_EVSE_SLAC_init: E/F, then 5 % again [V2G3-M06-07]
    {"trigger": "wake_up", "source": _M.WAITING, "dest": _M.EF_STEP},
    {"trigger": "wake_up_done", "source": _M.EF_STEP, "dest": _M.WAITING},
    {"trigger": "confirm_match", "source": _M.WAITING, "dest": _M.MATCHED},  # MATCH.CNF sent
    {"trigger": "join", "source": _M.MATCHED, "dest": _M.LINKED},  # the car's modem joined
    {"trigger": "join_timeout", "source": _M.MATCHED, "dest": _M.WAITING},  # TT_match_join
    # the matched car starts over with a new CM_SLAC_PARM.REQ [V2G3-A09-16]
    {"trigger": "rematch", "source": [_M.MATCHED, _M.LINKED], "dest": _M.WAITING},
    {"trigger": "link_lost", "source": _M.LINKED, "dest": _M.WAITING},
    {"trigger": "give_up", "source": [_M.WAITING, _M.MATCHED], "dest": _M.FAILED},
    {"trigger": "terminate", "source": _ALIVE, "dest": _M.LEFT},  # D-LINK_TERMINATE
    {"trigger": "restart", "source": [_M.FAILED, _M.LEFT], "dest": _M.WAITING},
]


class SessionState(Enum):
    PARM_CONFIRMED = "parm_confirmed"  # CM_SLAC_PARM.CNF sent; START_ATTEN_CHAR expected
    SOUNDING = "sounding"  # collecting CM_ATTEN_PROFILE.IND for TT_EVSE_match_MNBC
    AWAIT_ATTEN_RSP = "await_atten_rsp"  # CM_ATTEN_CHAR.IND sent (TT_match_response, resends)
    AWAIT_MATCH = "await_match"  # RSP received: VALIDATE / MATCH.REQ (TT_EVSE_match_session)
    MATCHED = "matched"  # CM_SLAC_MATCH.CNF sent to this car


_S = SessionState

SESSION_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "start_sounding", "source": _S.PARM_CONFIRMED, "dest": _S.SOUNDING},
    {"trigger": "report", "source": _S.SOUNDING, "dest": _S.AWAIT_ATTEN_RSP},  # [V2G3-A09-19]
    {"trigger": "acknowledged", "source": _S.AWAIT_ATTEN_RSP, "dest": _S.AWAIT_MATCH},
    # a valid MATCH.REQ also proves the car got our report (its RSP may have been lost)
    {"trigger": "match", "source": [_S.AWAIT_ATTEN_RSP, _S.AWAIT_MATCH], "dest": _S.MATCHED},
]
