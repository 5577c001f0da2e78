"""asyncio shell around one EVSE's ISO 15118-20 SECC session: TCP/TLS server plus EVSE feed.

* ``serve()`` listens (IPv6 link-local of the PLC interface, or ``::1`` for
  loopback tests) and serves one connection at a time per EVSE: a second
  connection while a session runs is closed at once (the running session is
  not disturbed). Bytes read go to the sans-I/O session; responses are written
  whole, one message per send (FACTS.md "Transport").
* ``evse_loop()`` keeps the session informed of the EVSE (CP state,
  contactors, present voltage/current, isolation, meter, faults,
  authorisation) whenever the runner observes a change, and runs its timers.
* The session's power requests go through the EVSE runner to the controller,
  which gates them with the IEC 61851 state and the safety supervisor; the
  adapter never drives hardware itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chargepoint.adapters.evse_runner import EvseRunner
from chargepoint.errors import RemoteProtocolError
from chargepoint.evse.events import (
    HlcContactors,
    HlcIsolationMonitor,
    HlcPower,
    HlcSessionEnded,
)
from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118.secc.actions import (
    Action,
    CloseConnection,
    EvReport,
    RequestContactors,
    RequestIsolationMonitor,
    RequestPower,
    SendData,
    SessionEnded,
    SessionNotice,
)
from chargepoint.iso15118.secc.events import (
    ConnectionLost,
    ConnectionOpened,
    CsmsNeedsAnswered,
    DataReceived,
    EvseChanged,
    EvseView,
    LimitsChanged,
    StopRequested,
)
from chargepoint.iso15118.secc.session import SeccSession
from chargepoint.power.arbitration import CSMS_SOURCE, Arbiter

log = logging.getLogger(__name__)

READ_CHUNK = 65_536
DYNAMIC_PORTS = (49152, 65535)
PORT_ATTEMPTS = 50
SessionListener = Callable[[int, Action], None]
MAX_TIMING_SAMPLES = 1_000_000


@dataclass
class SessionStats:
    """What the CLI and the demo show about the current/last -20 session."""

    last_request: str = ""
    ev_soc_pct: int | None = None
    ev_voltage_v: float | None = None
    target_current_a: float | None = None
    target_power_w: float | None = None
    sessions: int = 0
    last_end: str = ""
    notices: list[str] = field(default_factory=list)


class V2gServer:
    """One EVSE's V2G server (the SECC side of ISO 15118-20)."""

    def __init__(
        self,
        runner: EvseRunner,
        session: SeccSession,
        arbiter: Arbiter,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        tls_policy: Callable[[ssl.SSLObject], None] | None = None,
        listeners: list[SessionListener] | None = None,
        link_up: Callable[[], bool] | None = None,
    ) -> None:
        self.runner = runner
        self.session = session
        self.arbiter = arbiter
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.tls_policy = tls_policy
        self.listeners: list[SessionListener] = listeners if listeners is not None else []
        # With a PLC link: only a car that joined our logical network is served
        self.link_up = link_up
        self.stats = SessionStats()
        self.bound_port: int | None = None
        self.listening = asyncio.Event()
        self._lock = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._dirty = asyncio.Event()
        self._view = EvseView()
        self._closing = False
        # bench/secc_loop.py: (request, service time s) of the latest requests, or None
        self.timing: deque[tuple[str, float]] | None = None
        runner.observers.append(self._dirty.set)

    @property
    def evse_id(self) -> int:
        return self.runner.evse_id

    def record_timing(self, samples: int) -> None:
        """Measurement hook (off by default): keep the service time of the latest
        ``samples`` requests, from their bytes returned by ``read()`` until the
        response is drained to the socket, which includes the power-stage command
        the request caused (sent before the response); 0 stops recording."""
        if not 0 <= samples <= MAX_TIMING_SAMPLES:
            raise ValueError(f"samples must be within 0..{MAX_TIMING_SAMPLES}, got {samples}")
        self.timing = deque(maxlen=samples) if samples else None

    def take_timing(self) -> list[tuple[str, float]]:
        """The recorded samples, oldest first; the buffer is emptied."""
        if self.timing is None:
            return []
        samples = list(self.timing)
        self.timing.clear()
        return samples

    # -- inputs from the EVSE side ------------------------------------------------------
    def snapshot(self) -> EvseView:
        """What the session may know of the EVSE right now."""
        r = self.runner
        ctl = r.controller
        pilot = r.last_pilot
        stage = r.last_power_stage
        meter = r.last_meter
        iso = r.last_isolation
        if stage is not None:
            voltage, current = stage.voltage_v, stage.current_a
        elif meter is not None:
            voltage, current = meter.voltage_v, meter.current_a
        else:
            voltage, current = 0.0, 0.0
        return EvseView(
            cp_state=pilot.cp_state if pilot is not None else CpState.A,
            pwm_on=ctl.pwm_duty_pct is not None,
            contactors_closed=pilot.contactor_closed if pilot is not None else False,
            faulted=bool(ctl.latched_faults),
            authorized=ctl.authorized,
            present_voltage_v=voltage,
            present_current_a=current,
            isolation_ohm=None if iso is None else iso.resistance_ohm,
            isolation_device_fault=False if iso is None else iso.device_fault,
            import_energy_wh=None if meter is None else meter.import_energy_wh,
            export_energy_wh=None if meter is None else meter.export_energy_wh,
        )

    async def limits_changed(self) -> None:
        """The arbiter changed (operator set-point, later CSMS): tell the session."""
        await self._feed(self._limits_event())

    def _limits_event(self) -> LimitsChanged:
        arbiter = self.arbiter
        return LimitsChanged(
            arbiter.effective(bpt=True),
            arbiter.setpoint_w,
            grid=arbiter.grid,
            base=arbiter.effective(bpt=True, without=(CSMS_SOURCE,)),
        )

    async def csms_needs_answered(self, schedule_coming: bool) -> None:
        """The CSMS's answer to the EV's needs (OCPP K15): wait for its TxProfile or not."""
        await self._feed(CsmsNeedsAnswered(schedule_coming))

    async def stop_requested(self, reason: str) -> None:
        await self._feed(StopRequested(reason))

    async def link_lost(self, reason: str) -> None:
        """The PLC link went (unplug, link down, D-LINK_TERMINATE): end the session;
        the controller then takes the power path to its safe state."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        log.info("evse %d: closing the V2G connection: PLC link lost (%s)", self.evse_id, reason)
        writer.close()
        await self._feed(ConnectionLost(f"PLC link lost: {reason}"))

    async def evse_loop(self) -> None:
        """Feed EVSE changes and timers into the session (runs for the service's life)."""
        loop = asyncio.get_running_loop()
        await self._feed(self._limits_event())
        while True:
            deadline = self.session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                async with asyncio.timeout(timeout):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            view = self.snapshot()
            if view != self._view:
                was_authorized = self._view.authorized
                self._view = view
                await self._feed(EvseChanged(view))
                if was_authorized and not view.authorized and self.session.active:
                    await self._feed(StopRequested("authorisation withdrawn"))
            deadline = self.session.next_deadline()
            if deadline is not None and loop.time() >= deadline:
                async with self._lock:
                    await self._execute(self.session.handle_timer(loop.time()))

    # -- the server -------------------------------------------------------------------------
    async def serve(self) -> None:
        server = await self._start_server()
        sock = server.sockets[0]
        self.bound_port = int(sock.getsockname()[1])
        log.info(
            "evse %d: ISO 15118-20 server on [%s]:%d (%s)",
            self.evse_id,
            self.host,
            self.bound_port,
            "TLS 1.3" if self.ssl_context is not None else "plain TCP, lab mode",
        )
        self.listening.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            # The service is stopping: its own shutdown drives the safe state; the
            # connection handler (owned by asyncio's server) must not touch the EVSE.
            self._closing = True
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.close()

    async def _start_server(self) -> asyncio.Server:
        """Listen on the configured port, or on a free one of the dynamic range (port 0):
        SDP announces it and EVCCs expect 49152-65535."""
        if self.port != 0:
            return await asyncio.start_server(
                self._connection, host=self.host, port=self.port, ssl=self.ssl_context
            )
        for _ in range(PORT_ATTEMPTS):
            port = random.randint(*DYNAMIC_PORTS)
            try:
                return await asyncio.start_server(
                    self._connection, host=self.host, port=port, ssl=self.ssl_context
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free port in {DYNAMIC_PORTS} after {PORT_ATTEMPTS}")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_text = f"[{peer[0]}]:{peer[1]}" if peer else "?"
        if self.session.active or self._writer is not None:
            log.warning("evse %d: refusing %s: a session is running", self.evse_id, peer_text)
            writer.close()
            return
        if self.link_up is not None and not self.link_up():
            # ISO 15118-3: IPv6 traffic starts after D-LINK_READY; this is no car of ours
            log.warning("evse %d: refusing %s: no PLC link (SLAC)", self.evse_id, peer_text)
            writer.close()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None and self.tls_policy is not None:
            try:
                self.tls_policy(ssl_object)
            except RemoteProtocolError as exc:
                log.warning("evse %d: TLS policy refused %s: %s", self.evse_id, peer_text, exc)
                writer.close()
                return
        self._writer = writer
        try:
            await self._feed(EvseChanged(self.snapshot()))
            await self._feed(ConnectionOpened(peer_text, tls=ssl_object is not None))
            while self._writer is writer:
                try:
                    data = await reader.read(READ_CHUNK)
                except (ConnectionError, ssl.SSLError) as exc:
                    await self._feed(ConnectionLost(repr(exc)))
                    break
                received_at = time.perf_counter()
                actions = await self._feed(DataReceived(data))
                if self.timing is not None and any(isinstance(a, SendData) for a in actions):
                    self.timing.append(
                        (self.session.last_request, time.perf_counter() - received_at)
                    )
                if not data:
                    break
        finally:
            if self._writer is writer:
                self._writer = None
                await self._feed(ConnectionLost("connection closed"))
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    # -- feeding the session and carrying out its actions --------------------------------------
    async def _feed(self, event: object) -> list[Action]:
        if self._closing:
            return []
        async with self._lock:
            loop = asyncio.get_running_loop()
            actions = self.session.handle(event, loop.time(), time.time())  # type: ignore[arg-type]
            await self._execute(actions)
            self.stats.last_request = self.session.last_request
            return actions

    async def _execute(self, actions: list[Action]) -> None:
        runner = self.runner
        for action in actions:
            match action:
                case SendData(data=data):
                    writer = self._writer
                    if writer is not None and not writer.is_closing():
                        writer.write(data)
                        try:
                            await writer.drain()
                        except (ConnectionError, ssl.SSLError) as exc:
                            log.warning("evse %d: write failed: %r", self.evse_id, exc)
                case CloseConnection(reason=reason):
                    writer = self._writer
                    self._writer = None
                    if writer is not None:
                        log.info("evse %d: closing the V2G connection: %s", self.evse_id, reason)
                        writer.close()
                case RequestPower(phase=phase, voltage_v=v, current_a=i, power_w=p):
                    await runner.submit(HlcPower(phase, v, i, p))
                case RequestContactors(closed=closed):
                    await runner.submit(HlcContactors(closed))
                case RequestIsolationMonitor(on=on):
                    await runner.submit(HlcIsolationMonitor(on))
                case SessionEnded(reason=reason, failed=failed):
                    self.stats.sessions += 1
                    self.stats.last_end = reason
                    await runner.submit(HlcSessionEnded(failed, reason))
                    log.log(
                        logging.WARNING if failed else logging.INFO,
                        "evse %d: ISO 15118-20 session ended: %s",
                        self.evse_id,
                        reason,
                    )
                case EvReport():
                    self.stats.ev_soc_pct = action.soc_pct
                    self.stats.ev_voltage_v = action.ev_voltage_v
                    self.stats.target_current_a = action.target_current_a
                    self.stats.target_power_w = action.target_power_w
                case SessionNotice(kind=kind, detail=detail):
                    log.info("evse %d: %s: %s", self.evse_id, kind, detail)
            for listener in self.listeners:
                listener(self.evse_id, action)
