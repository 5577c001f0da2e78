"""One EVSE's PLC link inside the running service: SLAC follows the control pilot,
and the V2G server opens only to a car that has joined our logical network.

Wires, and nothing else:

* the CP state the EVSE runner measures -> ``CpChanged`` (ISO 15118-3 starts
  matching on B, leaves the AVLN on A [V2G3-M09-17]);
* the controller offering 5 % again after its X1 pause -> ``Restart``;
* a -20 session that ended without a pause -> ``Terminate`` (D-LINK_TERMINATE);
* the matcher's pilot requests -> controller events (E/F step, X1 give-up);
* ``LinkReady`` / ``LinkLost`` -> the V2G server accepts connections / ends the
  running session safely (its power path is gated by the controller anyway).

The matcher and its I/O shell are :mod:`chargepoint.slac.matcher` and
:class:`chargepoint.adapters.slac_listen.SlacLinkRunner`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chargepoint.adapters.evse_runner import EvseRunner
from chargepoint.adapters.slac_listen import SlacLinkRunner
from chargepoint.evse.events import Event as EvseEvent
from chargepoint.evse.events import HlcLinkFailed, HlcWakeUp
from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118.secc.actions import Action as SessionAction
from chargepoint.iso15118.secc.actions import SessionEnded
from chargepoint.slac import format_mac
from chargepoint.slac.matcher import (
    Action,
    AttemptDropped,
    CpChanged,
    LinkLost,
    LinkReady,
    MatchingFailed,
    MatchingStarted,
    PilotRequest,
    RequestPilot,
    Restart,
    SlacMatcher,
    SlacSettings,
    SlacStateChanged,
    Terminate,
)
from chargepoint.slac.states import MatcherState
from hal.plc.link import PlcLink

log = logging.getLogger(__name__)

_PRESENT = (CpState.B, CpState.C, CpState.D)


@dataclass
class SlacStatus:
    """What ``chargepoint status`` and the demo show about the PLC link."""

    interface: str
    state: str = MatcherState.IDLE.value
    ev_mac: str | None = None
    nid: str | None = None
    attenuation_db: float | None = None
    num_sounds: int | None = None
    match_time_s: float | None = None  # CP B -> link ready, of the current/last match
    matches: int = 0
    attempts_dropped: int = 0  # a car's run ended unmatched (it may retry)
    last_attempt: str = ""
    failures: int = 0  # matching failed (joins timed out, TT_EVSE_SLAC_init, gave up)
    last_failure: str = ""
    last_lost: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "state": self.state,
            "link_ready": self.state == MatcherState.LINKED.value,
            "ev_mac": self.ev_mac,
            "nid": self.nid,
            "attenuation_db": self.attenuation_db,
            "num_sounds": self.num_sounds,
            "match_time_s": self.match_time_s,
            "matches": self.matches,
            "attempts_dropped": self.attempts_dropped,
            "last_attempt": self.last_attempt,
            "failures": self.failures,
            "last_failure": self.last_failure,
            "last_lost": self.last_lost,
        }


class LinkGate:
    """What the V2G side needs of the link: is it up, and tell me when it goes."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.on_lost: list[Callable[[str], Any]] = []  # sync; may return an awaitable

    @property
    def up(self) -> bool:
        return self.ready.is_set()


class EvseSlac:
    """SLAC for one EVSE: a :class:`SlacLinkRunner` plus the wires to the service."""

    def __init__(
        self,
        runner: EvseRunner,
        link: PlcLink,
        settings: SlacSettings,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.runner = runner
        self.link = link
        self.settings = settings
        self.matcher = SlacMatcher(settings, host_mac=link.host_mac, random_bytes=random_bytes)
        self.slac = SlacLinkRunner(self.matcher, link, on_action=self._on_action)
        self.gate = LinkGate()
        self.status = SlacStatus(interface=link.interface)
        self._effects: asyncio.Queue[EvseEvent | str] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._cp: CpState | None = None
        self._pwm_on = False
        runner.observers.append(self._changed.set)

    @property
    def evse_id(self) -> int:
        return self.runner.evse_id

    async def run(self) -> None:
        """Run until cancelled (the link must be open)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.slac.run())
            tasks.create_task(self._follow_evse())
            tasks.create_task(self._carry_out())

    def session_action(self, evse_id: int, action: SessionAction) -> None:
        """V2G server listener: a -20 session that ended without a pause ends the link
        too (D-LINK_TERMINATE); a paused one keeps it for the car's return."""
        if evse_id != self.evse_id or not isinstance(action, SessionEnded) or action.paused:
            return
        if self.matcher.state in (MatcherState.LINKED, MatcherState.MATCHED):
            self.slac.post(Terminate())

    # -- EVSE -> matcher ---------------------------------------------------------------
    async def _follow_evse(self) -> None:
        await self.runner.ready.wait()
        while True:
            self._changed.clear()
            pilot = self.runner.last_pilot
            cp = pilot.cp_state if pilot is not None else CpState.A
            pwm_on = self.runner.controller.pwm_duty_pct is not None
            if cp is not self._cp:
                self._cp = cp
                self.slac.post(CpChanged(cp))
            if (
                pwm_on
                and not self._pwm_on
                and cp in _PRESENT
                and self.matcher.state in (MatcherState.FAILED, MatcherState.LEFT)
            ):
                # 5 % again after the X1 pause [V2G3-M06-07]: the car may match anew
                self.slac.post(Restart())
            self._pwm_on = pwm_on
            await self._changed.wait()

    # -- matcher -> service ------------------------------------------------------------
    def _on_action(self, action: Action) -> None:
        st = self.status
        match action:
            case RequestPilot(request=PilotRequest.STATE_F):
                self._effects.put_nowait(HlcWakeUp(self.settings.step_ef_s))
            case RequestPilot(request=PilotRequest.X1):
                self._effects.put_nowait(HlcLinkFailed(st.last_failure or "SLAC gave up"))
            case RequestPilot(request=PilotRequest.RESUME):
                pass  # the controller times the E/F step itself and returns to 5 %
            case SlacStateChanged(state=state):
                st.state = state.value
            case MatchingStarted(ev_mac=ev_mac):
                log.info("evse %d: SLAC: car %s started matching", self.evse_id, format_mac(ev_mac))
            case AttemptDropped(reason=reason):
                st.attempts_dropped += 1
                st.last_attempt = reason
            case LinkReady():
                st.state = MatcherState.LINKED.value
                st.ev_mac = format_mac(action.ev_mac)
                st.nid = action.nid.hex()
                st.attenuation_db = action.attenuation_db
                st.num_sounds = action.num_sounds
                st.match_time_s = action.match_time_s
                st.matches += 1
                self.gate.ready.set()
                log.info(
                    "evse %d: PLC link ready on %s: car %s, NID %s, %s, match %.3f s",
                    self.evse_id,
                    self.link.interface,
                    st.ev_mac,
                    st.nid,
                    "no sounds"
                    if action.attenuation_db is None
                    else f"attenuation {action.attenuation_db:.1f} dB",
                    action.match_time_s,
                )
            case LinkLost(reason=reason):
                st.last_lost = reason
                was_up = self.gate.up
                self.gate.ready.clear()
                if was_up:
                    log.info("evse %d: PLC link left: %s", self.evse_id, reason)
                    self._effects.put_nowait(reason)
            case MatchingFailed(reason=reason, final=final):
                st.failures += 1
                st.last_failure = reason
                log.log(
                    logging.WARNING if final else logging.INFO,
                    "evse %d: SLAC %s: %s",
                    self.evse_id,
                    "gave up" if final else "no match yet",
                    reason,
                )
            case _:
                pass

    async def _carry_out(self) -> None:
        """Controller events and link-lost hooks, in order, off the matcher's path."""
        while True:
            effect = await self._effects.get()
            if isinstance(effect, str):
                for hook in list(self.gate.on_lost):
                    result = hook(effect)
                    if asyncio.iscoroutine(result):
                        await result
            else:
                await self.runner.submit(effect)
