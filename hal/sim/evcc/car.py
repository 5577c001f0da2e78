"""The simulated ISO 15118-20 car: asyncio shell around :class:`Evcc20Session`.

::

    car = SimulatedCar(ev, CarProfile(services=("DC_BPT",), tls=False), CarControls())
    report = await car.run(sdp_target=("::1", sdp_port))          # or host_port=(...)
    report = await car.run(host_port=("::1", port), ssl_context=ctx)  # TLS, no SDP

It finds the SECC by SDP (or takes an explicit host/port), connects over TCP or
TLS (the ``ssl.SSLContext`` is built elsewhere), runs one session per
connection and resumes a paused one on a new connection. It reads only its
own side of the plant: battery, CP, DC contactor and, as its inlet voltage
measurement, ``plant.dc_voltage_v``; everything about the EVSE comes from the
-20 messages. The physics is stepped by whoever owns the world (e.g.
:class:`hal.sim.world.SimWorld`); the car only drives its hooks on
:class:`hal.sim.ev.SimulatedEv`.

``run`` raises :class:`CarError` (with ``.report``) when the charger misbehaved,
unless ``check=False``; a report is returned otherwise. Energy is what the car
measured at its battery terminals (voltage * current, integrated every
``meter_period_s``).

Paused sessions: after the car's own pause (``controls.pause``) it resumes
when the flag is cleared; after an EVSE pause (notification or GoToPause) it
resumes on a CP wake-up (the pilot leaves PWM and comes back, ISO 15118-3) or
gives up after ``evse_pause_max_wait_s``. ``controls.stop`` ends a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any

from chargepoint.iec61851.cp_state import PilotOutput
from chargepoint.iso15118.sdp import SDP_MULTICAST_ADDRESS, SDP_PORT, Security
from hal.sim.ev import SimulatedEv
from hal.sim.evcc.bounded import MessageLog, thin
from hal.sim.evcc.errors import CarError, CarTimeoutError
from hal.sim.evcc.outcome import (
    Action,
    EndReason,
    ResumeInfo,
    SessionFinished,
    SessionResult,
    SetAcPower,
    SetCp,
    SetDcContactor,
)
from hal.sim.evcc.profile import CarControls, CarProfile, EvMeasurements
from hal.sim.evcc.sdp_client import discover
from hal.sim.evcc.session import Evcc20Session

__all__ = ["SDP_MULTICAST_TARGET", "CarReport", "SimulatedCar", "TimelinePoint"]

_log = logging.getLogger(__name__)

SDP_MULTICAST_TARGET = (SDP_MULTICAST_ADDRESS, SDP_PORT)
"""Where a real car sends SDP (with ``interface=`` naming the PLC interface)."""

_READ_SIZE = 65_536
_POLL_S = 0.05
_MAX_S2_DELAY_S = 0.2  # [V2G20-847]: C within 250 ms of PowerDeliveryRes(Start)


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    t_s: float  # since run() started
    phase: str
    soc_pct: float
    battery_voltage_v: float
    battery_current_a: float  # + charging
    power_w: float  # at the battery terminals, + charging
    evse_voltage_v: float | None


@dataclass
class CarReport:
    ok: bool
    end_reason: str
    messages: list[str] = field(default_factory=list)  # first and last names of a long run
    energy_charged_wh: float = 0.0
    energy_discharged_wh: float = 0.0
    loops: int = 0
    renegotiations: int = 0  # schedule renegotiations completed (EVSE- or car-initiated)
    sessions: int = 0  # connections (a resumed session counts again)
    session_id: str | None = None
    evse_id: str | None = None
    service: str | None = None
    control_mode: str = ""
    timeline: list[TimelinePoint] = field(default_factory=list)
    error: CarError | None = None
    messages_dropped: int = 0  # charge-loop names left out of ``messages`` (a long run)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (timeline as lists, error as text)."""
        return {
            "ok": self.ok,
            "end_reason": self.end_reason,
            "messages": list(self.messages),
            "messages_dropped": self.messages_dropped,
            "energy_charged_wh": self.energy_charged_wh,
            "energy_discharged_wh": self.energy_discharged_wh,
            "loops": self.loops,
            "renegotiations": self.renegotiations,
            "sessions": self.sessions,
            "session_id": self.session_id,
            "evse_id": self.evse_id,
            "service": self.service,
            "control_mode": self.control_mode,
            "timeline": [
                [p.t_s, p.phase, p.soc_pct, p.battery_voltage_v, p.battery_current_a, p.power_w]
                for p in self.timeline
            ],
            "error": None if self.error is None else str(self.error),
        }


class SimulatedCar:
    """A simulated EV that speaks ISO 15118-20 over real TCP/TLS (see module docstring)."""

    def __init__(
        self,
        ev: SimulatedEv,
        profile: CarProfile | None = None,
        controls: CarControls | None = None,
        *,
        meter_period_s: float = 0.05,
        timeline_interval_s: float = 1.0,
    ) -> None:
        self.ev = ev
        self.plant = ev.plant
        self.profile = profile if profile is not None else CarProfile()
        self.controls = controls if controls is not None else CarControls()
        self.meter_period_s = meter_period_s
        self.timeline_interval_s = timeline_interval_s
        # The ISO stack decides when the car is done, and S2 must close fast.
        ev.target_soc_pct = 100.0
        ev.s2_close_delay_s = min(ev.s2_close_delay_s, _MAX_S2_DELAY_S)
        self._session: Evcc20Session | None = None
        self._last: Evcc20Session | None = None
        self._state = "idle"
        self._ac_current_a = 0.0
        self._charged_wh = 0.0
        self._discharged_wh = 0.0
        # Per run (reset by run()): the car lives as long as the service and
        # runs once per plug-in, so nothing here may grow across runs.
        self._messages = MessageLog()
        self._loops = 0
        self._renegotiations = 0
        self._sessions = 0
        self._timeline: list[TimelinePoint] = []
        self._timeline_step_s = timeline_interval_s
        self._t0 = 0.0

    # ------------------------------------------------------------------ API

    async def run(
        self,
        *,
        sdp_target: tuple[str, int] | None = None,
        host_port: tuple[str, int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        interface: str | None = None,
        server_hostname: str | None = None,
        check: bool = True,
    ) -> CarReport:
        """Charge until done; see the module docstring for errors and pauses.

        ``sdp_target``: where to send SDP requests (``SDP_MULTICAST_TARGET`` with
        ``interface`` on a real link, a loopback address in tests);
        ``host_port``: skip SDP (TLS iff ``ssl_context`` is given).
        """
        if (sdp_target is None) == (host_port is None):
            raise ValueError("give exactly one of sdp_target and host_port")
        target = _Target(sdp_target, host_port, ssl_context, interface, server_hostname)
        loop = asyncio.get_running_loop()
        self._new_run(loop.time())
        if not self.ev.plugged:
            self.ev.plug()
        meter = asyncio.create_task(self._meter(), name="car-meter")
        error: CarError | None = None
        result: SessionResult | None = None
        try:
            resume: ResumeInfo | None = None
            while True:
                result = await self._one_session(target, resume)
                if result.reason is EndReason.FAULT_DISAPPEAR:
                    self._state = "disappeared"
                    await asyncio.sleep(self.profile.fault_hold_s)
                if result.resume is None or not await self._wait_for_resume(result):
                    break
                resume = result.resume
        except CarError as exc:
            error = exc
        finally:
            self._apply(SetAcPower(0.0))
            self._apply(SetDcContactor(closed=False))
            self._apply(SetCp(closed=False))
            meter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await meter
            self._sample(force=True)
        report = self._report(result, error)
        self._state = "done" if report.ok else "failed"
        if error is not None and check:
            error.report = report
            raise error
        return report

    def status(self) -> dict[str, Any]:
        """JSON-able snapshot for the control socket and the demo's live line."""
        session = self._session
        battery = self.ev.battery
        return {
            "state": self._state if session is None else f"{self._state}:{session.phase.value}",
            "session": None if session is None else session.status(),
            "soc_pct": battery.soc_pct,
            "battery_voltage_v": self.plant.battery_voltage_v,
            "battery_current_a": battery.current_a,
            "inlet_voltage_v": self.plant.dc_voltage_v,
            "cp_state": self.ev.cp_state.value,
            "dc_contactor_closed": self.plant.ev_dc_contactor_closed,
            "ac_current_a": self.ev.current_a,
            "energy_charged_wh": self._charged_wh,
            "energy_discharged_wh": self._discharged_wh,
            "sessions": self._sessions,
            "loops": self._loops + (0 if session is None else session.loops),
            "renegotiations": self._renegotiations
            + (0 if session is None else session.renegotiations),
        }

    # ------------------------------------------------------------ sessions

    def _new_run(self, t0: float) -> None:
        """Forget the previous run (its report was already handed out)."""
        self._t0 = t0
        self._last = None
        self._charged_wh = 0.0
        self._discharged_wh = 0.0
        self._messages.clear()
        self._loops = 0
        self._renegotiations = 0
        self._sessions = 0
        self._timeline = []
        self._timeline_step_s = self.timeline_interval_s

    async def _one_session(self, target: _Target, resume: ResumeInfo | None) -> SessionResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.profile.communication_setup_timeout_s
        host, port, use_tls = await self._endpoint(target)
        ssl_context, server_hostname = target.ssl_context, target.server_hostname
        self._state = "connecting"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=ssl_context if use_tls else None,
                    server_hostname=(server_hostname or host) if use_tls else None,
                ),
                max(0.0, deadline - loop.time()),
            )
        except TimeoutError:
            raise CarTimeoutError(
                "connection", "", f"no TCP/TLS connection to {host}:{port}"
            ) from None
        except OSError as exc:
            raise CarError("connection", "", f"cannot connect to {host}:{port}: {exc}") from None
        self._sessions += 1
        self._state = "tls" if use_tls else "tcp"
        session = Evcc20Session(
            self.profile, self.controls, resume=resume, epoch_offset_s=time.time() - loop.time()
        )
        self._session = session
        try:
            return await self._converse(session, reader, writer)
        finally:
            self._messages.extend(session.messages)
            self._messages.dropped += session.messages.dropped
            self._loops += session.loops
            self._renegotiations += session.renegotiations
            self._last = session
            self._session = None
            if session.result is not None and session.result.reason is EndReason.FAULT_DISAPPEAR:
                writer.transport.abort()
            else:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()

    async def _endpoint(self, target: _Target) -> tuple[str, int, bool]:
        if target.host_port is not None:
            host, port = target.host_port
            return host, port, target.ssl_context is not None
        assert target.sdp_target is not None
        self._state = "sdp"
        wanted = Security.TLS if self.profile.tls else Security.NO_TLS
        response = await discover(
            target.sdp_target,
            security=wanted,
            interface=target.interface,
            timeout_s=self.profile.sdp_timeout_s,
            max_requests=self.profile.sdp_max_requests,
        )
        use_tls = response.security is Security.TLS
        if use_tls and target.ssl_context is None:
            raise CarError("SdpResponse", "Security", "the SECC offers TLS only; no ssl_context")
        if not use_tls and wanted is Security.TLS and not self.profile.allow_plain_tcp_fallback:
            raise CarError(
                "SdpResponse", "Security", "the SECC offers no TLS; -20 requires it ([V2G20-2356])"
            )
        return _host(response.address, target.interface), response.port, use_tls

    async def _converse(
        self, session: Evcc20Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> SessionResult:
        loop = asyncio.get_running_loop()
        try:
            session.start(loop.time(), self._measure())
            while True:
                await self._flush(session, writer)
                if session.finished:
                    break
                deadline = session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    # not wait_for: on 3.11 it may drop a cancellation (the service hung on stop)
                    async with asyncio.timeout(timeout):
                        data = await reader.read(_READ_SIZE)
                except TimeoutError:
                    session.update(self._measure())
                    session.handle_timer(loop.time())
                    continue
                except OSError as exc:
                    session.update(self._measure())
                    session.connection_lost(loop.time(), str(exc))
                    continue
                session.update(self._measure())
                session.receive_data(data, loop.time())
        except CarError:
            await self._flush(session, None)
            raise
        assert session.result is not None
        return session.result

    async def _flush(self, session: Evcc20Session, writer: asyncio.StreamWriter | None) -> None:
        for action in session.actions():
            self._apply(action)
        frames = session.data_to_send()
        if writer is None:
            return
        for frame in frames:  # one message per send (FACTS.md "Transport")
            writer.write(frame)
        if frames:
            try:
                await writer.drain()
            except OSError as exc:
                session.connection_lost(asyncio.get_running_loop().time(), str(exc))

    async def _wait_for_resume(self, result: SessionResult) -> bool:
        """True when the paused session should be joined again now."""
        controls = self.controls
        self._state = "paused"
        if result.reason is EndReason.PAUSED:
            await _poll_until(lambda: not controls.pause or controls.stop)
            return not controls.stop
        pilot_left = False

        def woken_up() -> bool:
            nonlocal pilot_left
            if self.plant.pilot_output is not PilotOutput.PWM:
                pilot_left = True
                return False
            return pilot_left

        woke = await _poll_until(
            lambda: woken_up() or controls.stop, self.profile.evse_pause_max_wait_s
        )
        if woke and not controls.stop:
            _log.info("car: CP wake-up after the EVSE pause; resuming")
            return True
        return False

    # ------------------------------------------------------------- hardware

    def _apply(self, action: Action) -> None:
        ev = self.ev
        if isinstance(action, SetCp):
            if action.closed:
                ev.request_energy()
                ev.set_hlc_ready(True)
                ev.set_hlc_ac_current(self._ac_current_a)
            else:
                ev.set_hlc_ready(False)
                ev.stop()
        elif isinstance(action, SetDcContactor):
            if ev.plugged:
                ev.set_dc_contactor(action.closed)
        elif isinstance(action, SetAcPower):
            phases = max(1, min(ev.phases, self.plant.phases))
            volts = self.plant.grid_voltage_v * phases
            self._ac_current_a = action.power_w / volts if volts > 0 else 0.0
            ev.set_hlc_ac_current(self._ac_current_a)
        elif isinstance(action, SessionFinished):
            _log.info("car: session finished: %s", action.result.reason.value)

    def _measure(self) -> EvMeasurements:
        ev, battery, plant = self.ev, self.ev.battery, self.plant
        phases = max(1, min(ev.phases, plant.phases))
        ac_w_per_a = plant.grid_voltage_v * phases
        eff = ev.onboard_charger_efficiency
        return EvMeasurements(
            soc_pct=battery.soc_pct,
            battery_voltage_v=plant.battery_voltage_v or battery.open_circuit_voltage_v(),
            battery_current_a=battery.current_a,
            inlet_voltage_v=plant.dc_voltage_v,
            capacity_wh=battery.capacity_wh,
            min_voltage_v=battery.min_voltage_v,
            max_voltage_v=battery.max_voltage_v,
            reserve_soc_pct=battery.min_soc_pct,
            charge_power_limit_w=battery.charge_power_limit_w(),
            discharge_power_limit_w=battery.discharge_power_limit_w(),
            max_charge_power_w=battery.max_charge_power_w,
            max_discharge_power_w=battery.max_discharge_power_w,
            cp_state=ev.cp_state,
            ac_voltage_v=plant.grid_voltage_v,
            ac_phases=phases,
            ac_power_w=ac_w_per_a * ev.current_a,
            ac_max_charge_power_w=min(
                ac_w_per_a * ev.onboard_charger_max_current_a,
                battery.max_charge_power_w / eff,
            ),
            ac_max_discharge_power_w=min(
                ac_w_per_a * ev.onboard_charger_max_current_a,
                battery.max_discharge_power_w * eff,
            ),
            ac_min_power_w=min(ac_w_per_a * 6.0, ac_w_per_a * ev.onboard_charger_max_current_a),
        )

    async def _meter(self) -> None:
        """Integrate battery power (the car's own measurement) and sample the timeline."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.meter_period_s)
            now = loop.time()
            power_w = self.plant.battery_voltage_v * self.ev.battery.current_a
            energy_wh = power_w * (now - last) / 3600.0
            if energy_wh >= 0:
                self._charged_wh += energy_wh
            else:
                self._discharged_wh -= energy_wh
            last = now
            self._sample()

    def _sample(self, *, force: bool = False) -> None:
        now = asyncio.get_running_loop().time() - self._t0
        if not force and self._timeline and now - self._timeline[-1].t_s < self._timeline_step_s:
            return
        if thin(self._timeline):  # a long run: keep its whole span at a coarser step
            self._timeline_step_s *= 2
        session = self._session
        battery = self.ev.battery
        self._timeline.append(
            TimelinePoint(
                t_s=now,
                phase=self._state if session is None else session.phase.value,
                soc_pct=battery.soc_pct,
                battery_voltage_v=self.plant.battery_voltage_v,
                battery_current_a=battery.current_a,
                power_w=self.plant.battery_voltage_v * battery.current_a,
                evse_voltage_v=None if session is None else session.evse_present_voltage_v,
            )
        )

    def _report(self, result: SessionResult | None, error: CarError | None) -> CarReport:
        last = self._last
        if error is not None or result is None:
            ok, reason = False, "error"
        else:
            ok, reason = result.ok, result.reason.value
        return CarReport(
            ok=ok,
            end_reason=reason,
            messages=list(self._messages),
            energy_charged_wh=self._charged_wh,
            energy_discharged_wh=self._discharged_wh,
            loops=self._loops,
            renegotiations=self._renegotiations,
            sessions=self._sessions,
            session_id=None if last is None else last.session_id.hex().upper(),
            evse_id=None if last is None else last.evse_id,
            service=None if last is None else last.service,
            control_mode=self.profile.control_mode,
            timeline=list(self._timeline),
            error=error,
            messages_dropped=self._messages.dropped,
        )


@dataclass(frozen=True, slots=True)
class _Target:
    sdp_target: tuple[str, int] | None
    host_port: tuple[str, int] | None
    ssl_context: ssl.SSLContext | None
    interface: str | None
    server_hostname: str | None


async def _poll_until(predicate: Callable[[], bool], timeout_s: float | None = None) -> bool:
    """Poll a plain flag (controls are a mutable record, not events); False on timeout."""
    loop = asyncio.get_running_loop()
    end = None if timeout_s is None else loop.time() + timeout_s
    while True:
        if predicate():
            return True
        if end is not None and loop.time() >= end:
            return False
        await asyncio.sleep(_POLL_S)


def _host(address: IPv6Address, interface: str | None) -> str:
    """Connectable host text; link-local addresses need the interface as scope."""
    if address.is_link_local and interface:
        return f"{address}%{interface}"
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
