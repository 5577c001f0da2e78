"""The one composition root: configuration -> HAL backends -> adapters.

Only this module knows both the concrete HAL backends (real drivers and
simulated devices) and the adapters. Simulated hardware runs in an outer task
group that outlives the service's task group, so the service's orderly
shutdown (power off, contactors open, CP at F) still reaches the simulated
boards over their wires.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chargepoint.adapters.control_socket import ControlRequestError, serve_control
from chargepoint.adapters.evse_runner import EvseDevices, EvseRunner, Listener
from chargepoint.adapters.log_upload import LogFiles
from chargepoint.adapters.systemd_notify import SystemdNotifier
from chargepoint.backends import (
    ISOLATION_MONITORS,
    METERS,
    PILOT_BOARDS,
    PLC_LINKS,
    POWER_STAGES,
    TOKEN_READERS,
    Build,
    SimHardware,
    build,
)
from chargepoint.config import (
    Config,
    EvseConfig,
)
from chargepoint.evse.controller import EvseController, EvseSettings
from chargepoint.evse.events import (
    ClearFaults,
    Event,
    SetAvailable,
    SetCurrentLimit,
    StartCharging,
    StopCharging,
)
from hal.errors import HalInitError
from hal.power_stage import PowerStageCapabilities
from hal.sim.battery import Battery
from hal.sim.ev import SimulatedEv
from hal.sim.meter import SimulatedMeter
from hal.sim.plant import Plant
from hal.sim.world import SimCommandError, SimWorld

if TYPE_CHECKING:
    from chargepoint.adapters.evse_slac import EvseSlac
    from chargepoint.adapters.firmware_update import UpdaterSettings
    from chargepoint.adapters.iso15118_setup import Tls
    from chargepoint.adapters.ocpp_bridge import OcppBridge
    from chargepoint.adapters.ocpp_client import OcppClientSettings
    from chargepoint.adapters.token_auth import TokenAuthorizer
    from chargepoint.adapters.v2g_server import V2gServer
    from chargepoint.ocpp.station_io import StationCommand
    from hal.plc.link import PlcLink
    from hal.plc.simulated import SimulatedPlcLine
    from hal.sim.evcc import SimulatedCar
    from hal.token_reader import TokenReader

log = logging.getLogger(__name__)

SAFETY_STALL_S = 1.0  # watchdog is fed only if every safety loop passed this recently
MAX_LIMIT_A = 3_000.0  # the largest conductive charging current (MCS)
MAX_SETPOINT_W = 1.0e6  # far beyond any charger; the arbiter clamps to the real limits
CAR_POLL_S = 0.05
OVER_VOLTAGE_MARGIN = 1.05  # [safety] over_voltage_v unset: the stage's maximum + 5 %
SIM_SLAC_S = 0.2  # no PLC link configured: the car waits this long, as if SLAC ran


class ServiceStop(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside the service task group to stop it in order."""


def evse_settings(
    config: Config, evse: EvseConfig, caps: PowerStageCapabilities | None = None
) -> EvseSettings:
    safety = config.safety.limits()
    if safety.over_voltage_v is None and caps is not None:
        # IEC 61851-23 6.3.1.106: cut the output before it exceeds what it is rated for
        safety = replace(safety, over_voltage_v=caps.max_voltage_v * OVER_VOLTAGE_MARGIN)
    connector_limits = [c.max_current_a for c in evse.connectors if c.max_current_a is not None]
    power = evse.max_power_w if evse.max_power_w is not None else float("inf")
    return EvseSettings(
        max_current_a=min([evse.max_current_a, *connector_limits]),
        ventilation=evse.ventilation,
        autostart=evse.autostart,
        has_power_stage=evse.power_stage is not None,
        safety=safety,
        socket_lock=any(not c.tethered for c in evse.connectors),
        socket_outlet=any(not c.tethered for c in evse.connectors),
        # DC needs digital communication; AC with ISO 15118 configured offers 5 % too
        hlc_only=evse.kind == "dc" or config.iso15118 is not None,
        max_voltage_v=caps.max_voltage_v if caps is not None else 0.0,
        max_export_current_a=min(evse.max_current_a, caps.max_export_current_a) if caps else 0.0,
        max_import_current_a=min(evse.max_current_a, caps.max_import_current_a)
        if caps is not None and caps.bidirectional
        else 0.0,
        max_export_power_w=min(power, caps.max_export_power_w) if caps else 0.0,
        max_import_power_w=min(power, caps.max_import_power_w)
        if caps is not None and caps.bidirectional
        else 0.0,
        hlc_retries=config.iso15118.retries if config.iso15118 else 0,
        basic_fallback=evse.kind == "ac"
        and config.iso15118 is not None
        and config.iso15118.fallback_to_basic,
    )


class Station:
    """The running service: one runner per EVSE, control socket, watchdog."""

    def __init__(self, config: Config, *, control_socket: Path | None = None) -> None:
        self.config = config
        self.control_socket = control_socket or Path(config.runtime.control_socket)
        self.runners: dict[int, EvseRunner] = {}
        self.v2g: dict[int, V2gServer] = {}
        self.plc: dict[int, PlcLink] = {}
        self.slac: dict[int, EvseSlac] = {}
        self.sim: dict[int, SimHardware] = {}
        self.token_readers: dict[int, TokenReader] = {}  # opened by their TokenAuthorizer
        self.token_auth: dict[int, TokenAuthorizer] = {}
        self._bridge: OcppBridge | None = None
        self.listeners: list[Listener] = []
        self.ready = asyncio.Event()
        self.restart_requested = False  # the CSMS asked for a Reset
        self._stop = asyncio.Event()
        self._notifier = SystemdNotifier()
        # diagnostics.log and security.log in the state dir (OCPP GetLog uploads them)
        self.logs = LogFiles(Path(config.runtime.state_dir), config.runtime.log_file_max_kb * 1024)
        # Checked now, so a bad [csms] section stops `run` before any hardware is touched.
        # The OCPP stack (ocpp, jsonschema, cryptography: ~20 MB) loads only when used.
        self._ocpp_settings: OcppClientSettings | None = None
        self._tls: Tls | None = None
        self._sdp = config.iso15118
        self.sdp_port: int | None = None
        self.sdp_ready = asyncio.Event()
        if config.csms is not None:
            from chargepoint.adapters.ocpp_bridge import client_settings  # noqa: PLC0415

            self._ocpp_settings = client_settings(config)

    def stop(self) -> None:
        self._stop.set()

    def restart(self) -> None:
        """Stop in order and exit with a code that makes systemd start us again."""
        self.restart_requested = True
        self._stop.set()

    # -- building ------------------------------------------------------------------
    def _build_evse(self, evse: EvseConfig, stack: AsyncExitStack) -> EvseDevices:
        """Every device of one EVSE from the backend registry (``chargepoint.backends``)."""
        hw = self._sim_hardware(evse) if self._needs_sim(evse) else None
        b = Build(self.config, evse, stack, hw)
        board = build(PILOT_BOARDS, b, evse.pilot_board)
        stage = None if evse.power_stage is None else build(POWER_STAGES, b, evse.power_stage)
        meter = None if evse.meter is None else build(METERS, b, evse.meter)
        isolation = (
            None
            if evse.isolation_monitor is None
            else build(ISOLATION_MONITORS, b, evse.isolation_monitor)
        )
        if evse.plc is not None:
            self.plc[evse.id] = build(PLC_LINKS, b, evse.plc)
        if evse.token_reader is not None:
            self.token_readers[evse.id] = build(TOKEN_READERS, b, evse.token_reader)
        return EvseDevices(board=board, meter=meter, power_stage=stage, isolation=isolation)

    def _sim_hardware(self, evse: EvseConfig) -> SimHardware:
        """The simulated plant of one EVSE: physics, the EV, its meter and IMD views."""
        sim_cfg = self.config.sim
        plant = Plant(grid_voltage_v=evse.nominal_voltage_v, phases=evse.phases or 3)
        battery = Battery(
            capacity_wh=sim_cfg.battery_capacity_wh if sim_cfg else 60_000.0,
            soc_pct=sim_cfg.initial_soc_pct if sim_cfg else 40.0,
            max_discharge_power_w=sim_cfg.max_discharge_power_w if sim_cfg else 11_000.0,
        )
        ev = SimulatedEv(
            plant,
            battery,
            onboard_charger_max_current_a=(
                sim_cfg.onboard_charger_max_current_a if sim_cfg else 16.0
            ),
            phases=sim_cfg.phases if sim_cfg else 3,
            wants_ventilation=sim_cfg.wants_ventilation if sim_cfg else False,
            target_soc_pct=sim_cfg.target_soc_pct if sim_cfg else 100.0,
        )
        meter = SimulatedMeter(plant, "dc" if evse.kind == "dc" else "ac")
        hw = SimHardware(SimWorld(plant, ev=ev, meter=meter))
        if self.config.iso15118 is not None and (sim_cfg is None or sim_cfg.simulated_car):
            hw.car = self._sim_car(ev)
        self.sim[evse.id] = hw
        return hw

    def _sim_car(self, ev: SimulatedEv) -> SimulatedCar:
        from hal.sim.evcc import CarControls, CarProfile, SimulatedCar  # noqa: PLC0415

        sim_cfg = self.config.sim
        iso = self.config.iso15118
        assert iso is not None
        profile = CarProfile(
            services=(sim_cfg.hlc_service,) if sim_cfg else ("DC_BPT",),
            control_mode=sim_cfg.control_mode if sim_cfg else "dynamic",
            tls=iso.tls == "on",
            loop_interval_s=sim_cfg.loop_interval_s if sim_cfg else 0.1,
            charge_loop_timeout_s=max(0.5, iso.charge_loop_timeout_s),
        )
        controls = CarControls(target_soc_pct=sim_cfg.target_soc_pct if sim_cfg else 80.0)
        return SimulatedCar(ev, profile, controls)

    def _evse_slac(self, evse: EvseConfig, runner: EvseRunner, link: PlcLink) -> EvseSlac:
        """SLAC for one EVSE, wired to its runner and V2G server."""
        from chargepoint.adapters import iso15118_setup as setup  # noqa: PLC0415
        from chargepoint.adapters.evse_slac import EvseSlac  # noqa: PLC0415

        slac = EvseSlac(runner, link, setup.slac_settings(evse))
        server = self.v2g.get(evse.id)
        if server is not None:
            server.link_up = slac.gate.ready.is_set
            server.listeners.append(slac.session_action)
            slac.gate.on_lost.append(server.link_lost)
        return slac

    async def _run_plc_line(self, hw: SimHardware) -> None:
        """The simulated car's modem follows the plug: SLAC starts on plug-in, the car's
        modem leaves the logical network on unplug."""
        line = hw.plc_line
        assert line is not None
        ev = hw.world.ev
        while True:
            await _poll_until(lambda: ev.plugged)
            plugs = ev.plugs
            line.plug()
            # a quick unplug and plug-in between two polls still counts as an unplug
            await _poll_until(lambda: not ev.plugged or ev.plugs != plugs)  # noqa: B023
            line.unplug()

    async def _run_car(self, evse_id: int, hw: SimHardware) -> None:
        """The simulated car: on every plug-in, SLAC (simulated PLC link, or a pause as if
        it ran), then one -20 session."""
        from chargepoint.adapters import iso15118_setup as setup  # noqa: PLC0415
        from hal.sim.evcc import CarError  # noqa: PLC0415

        car = hw.car
        assert car is not None
        ev = hw.world.ev
        cfg = self.config.iso15118
        assert cfg is not None
        evse = next(e for e in self.config.evse if e.id == evse_id)
        interface = setup.ipv6_interface(cfg, evse)
        loopback = interface == setup.LOOPBACK_INTERFACE

        def sdp_target(port: int | None) -> tuple[str, int]:
            """Loopback: ``::1``; a PLC interface: the SDP multicast group on it."""
            assert port is not None
            return ("::1", port) if loopback else ("ff02::1", port)

        tls = self._tls
        ssl_context = setup.car_tls(tls.pki) if tls is not None and car.profile.tls else None
        while True:
            await _poll_until(lambda: ev.plugged)
            plugs = ev.plugs
            slac = self.slac.get(evse_id)
            if slac is None:
                await asyncio.sleep(SIM_SLAC_S)  # no PLC link configured: as if SLAC ran
            else:
                gate = slac.gate
                await _poll_until(lambda: gate.up or not ev.plugged)  # noqa: B023
                if not ev.plugged:
                    continue  # SLAC failed (or was made to) until the car was unplugged
            await self.sdp_ready.wait()
            assert self.sdp_port is not None
            car.controls.stop = False
            car.controls.pause = False
            try:
                report = await car.run(
                    sdp_target=sdp_target(self.sdp_port),
                    interface=None if loopback else interface,
                    ssl_context=ssl_context,
                )
                hw.car_report = report.to_dict()
                log.info("sim car: session done (%s)", report.end_reason)
            except CarError as exc:
                hw.car_report = None if exc.report is None else exc.report.to_dict()
                log.error("sim car: %s", exc)
            # the next plug-in, also when it came before this poll saw the unplug
            await _poll_until(lambda: not ev.plugged or ev.plugs != plugs)  # noqa: B023

    def _needs_sim(self, evse: EvseConfig) -> bool:
        return any(
            getattr(section, "backend", None) == "sim"
            for section in (evse.pilot_board, evse.power_stage, evse.isolation_monitor, evse.meter)
        )

    # -- running -------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        _prepare_state_dir(Path(self.config.runtime.state_dir))
        try:
            async with AsyncExitStack() as stack:
                stack.enter_context(self.logs.diagnostics_log(self.config.runtime.log_level))
                devices = {e.id: self._build_evse(e, stack) for e in self.config.evse}
                async with asyncio.TaskGroup() as hardware:
                    sim_tasks = [
                        hardware.create_task(coro, name=f"sim-evse{evse_id}")
                        for evse_id, hw in self.sim.items()
                        for coro in hw.tasks()
                    ]
                    try:
                        await self._serve(devices)
                    finally:
                        for task in sim_tasks:
                            task.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _serve(self, devices: dict[int, EvseDevices]) -> None:
        for evse_id, dev in devices.items():
            for name, device in (
                ("pilot_board", dev.board),
                ("power_stage", dev.power_stage),
                ("isolation_monitor", dev.isolation),
                ("meter", dev.meter),
            ):
                if device is not None:
                    await _open(evse_id, name, device.open)
            evse = next(e for e in self.config.evse if e.id == evse_id)
            caps = await dev.power_stage.capabilities() if dev.power_stage is not None else None
            ctl = EvseController(evse_settings(self.config, evse, caps))
            self.runners[evse_id] = runner = EvseRunner(evse_id, ctl, dev, self.listeners)
            await runner.read_meter()  # registers known before anything is reported
            if self.config.iso15118 is not None:
                self.v2g[evse_id] = self._v2g_server(evse, runner, caps)
            link = self.plc.get(evse_id)
            if link is not None:
                await _open(evse_id, "plc", link.open)  # no interface, no CAP_NET_RAW
                self.slac[evse_id] = self._evse_slac(evse, runner, link)
        crashed: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                for evse_id, runner in self.runners.items():
                    for name, coro in (
                        ("safety", runner.safety_loop()),
                        ("keepalive", runner.keepalive_loop()),
                        ("notices", runner.notice_loop()),
                        ("meter", runner.meter_loop()),
                        ("power-stage", runner.power_stage_loop()),
                        ("isolation", runner.isolation_loop()),
                    ):
                        tg.create_task(_named(f"evse{evse_id}-{name}", coro))
                for evse_id, server in self.v2g.items():
                    tg.create_task(_named(f"evse{evse_id}-v2g", server.serve()))
                    tg.create_task(_named(f"evse{evse_id}-v2g-evse", server.evse_loop()))
                for evse_id, slac in self.slac.items():
                    tg.create_task(_named(f"evse{evse_id}-slac", slac.run()))
                if self._sdp is not None:
                    for name, coro in self._sdp_responders():
                        tg.create_task(_named(name, coro))
                for evse_id, hw in self.sim.items():
                    if hw.car is not None and evse_id in self.v2g:
                        tg.create_task(_named(f"sim-car{evse_id}", self._run_car(evse_id, hw)))
                    if hw.plc_line is not None:
                        tg.create_task(_named(f"sim-plc{evse_id}", self._run_plc_line(hw)))
                control_ready = asyncio.Event()
                tg.create_task(
                    _named(
                        "control", serve_control(self.control_socket, self._control, control_ready)
                    )
                )
                tg.create_task(_named("watchdog", self._notifier.watchdog_loop(self._alive)))
                if self._ocpp_settings is not None:
                    bridge = self._ocpp_bridge(self._ocpp_settings)
                    tg.create_task(_named("ocpp", bridge.client.run()))
                    tg.create_task(_named("ocpp-commands", bridge.command_loop()))
                    tg.create_task(_named("ocpp-firmware", bridge.firmware_loop()))
                    tg.create_task(_named("ocpp-log-upload", bridge.upload_loop()))
                for evse_id, reader in self.token_readers.items():
                    auth = self._token_authorizer(self.runners[evse_id], reader)
                    tg.create_task(_named(f"evse{evse_id}-token", auth.run()))
                tg.create_task(self._announce_ready(control_ready))
                tg.create_task(self._wait_for_stop())
        except* ServiceStop:
            log.info("stopping: power off, contactors open")
        except* Exception as group:  # noqa: BLE001 - report any crash, then re-raise
            crashed = group
            for exc in group.exceptions:
                log.critical("task crashed: %r %s", exc, " ".join(getattr(exc, "__notes__", [])))
            for runner in self.runners.values():
                await runner.report_crash(_task_name(group), repr(group.exceptions[0]))
        finally:
            self._notifier.notify("STOPPING=1")
            for runner in self.runners.values():
                await runner.shutdown()
            for link in self.plc.values():
                await link.close()  # before the simulated modems go away
        if crashed is not None:
            raise crashed

    def _ocpp_bridge(self, settings: OcppClientSettings) -> OcppBridge:
        from chargepoint.adapters.ocpp_bridge import OcppBridge  # noqa: PLC0415
        from chargepoint.adapters.ocpp_client import OcppClient  # noqa: PLC0415

        commands: asyncio.Queue[StationCommand] = asyncio.Queue()
        bridge = OcppBridge(
            OcppClient(settings, commands),
            commands,
            self.runners,
            self.restart,
            ev_soc=self._ev_soc,
            v2g=self.v2g,  # filled as the V2G servers are built; read per command
            logs=self.logs,
            firmware=self._firmware_settings(),
        )
        self.listeners.append(bridge.listener)
        self._bridge = bridge
        for server in self.v2g.values():
            server.listeners.append(bridge.v2g_action)
        bridge.start()
        return bridge

    def _firmware_settings(self) -> UpdaterSettings | None:
        """L01: where UpdateFirmware installs releases (``[firmware]``)."""
        import ssl  # noqa: PLC0415

        from chargepoint.adapters.firmware_update import UpdaterSettings  # noqa: PLC0415

        fw = self.config.firmware
        if fw is None:
            return None
        cafile = str(fw.ca_file) if fw.ca_file is not None else None
        return UpdaterSettings(
            releases_dir=Path(fw.releases_dir),
            confirm_within_s=fw.confirm_within_s,
            max_download_bytes=int(fw.max_download_mb * 1_000_000),
            ssl_context=ssl.create_default_context(cafile=cafile),
            python=sys.executable,
        )

    def _confirm_release(self) -> None:
        """L01: this release reached READY, so a firmware update that switched to it is
        kept (the rollback check before the next start would otherwise undo it)."""
        fw = self.config.firmware
        if fw is None:
            return
        from chargepoint.release import Releases  # noqa: PLC0415

        version = self.config.station.firmware_version
        if Releases(Path(fw.releases_dir), python=sys.executable).confirm(version):
            log.warning("release %s confirmed after a firmware update", version)

    def _token_authorizer(self, runner: EvseRunner, reader: TokenReader) -> TokenAuthorizer:
        """A card tap authorises with the CSMS (or its local list and cache), or, with no
        CSMS, with nobody: then any card starts and the same card stops."""
        from chargepoint.adapters.token_auth import TokenAuthorizer  # noqa: PLC0415

        bridge = self._bridge
        auth = (
            TokenAuthorizer(runner, reader)
            if bridge is None
            else TokenAuthorizer(runner, reader, bridge.client.authorize, sink=bridge)
        )
        self.token_auth[runner.evse_id] = auth
        self.listeners.append(auth.listener)
        return auth

    async def _tap(self, runner: EvseRunner, request: dict[str, Any]) -> dict[str, Any]:
        """``chargepoint sim tap UID``: a card held over the EVSE's simulated reader."""
        hw = self.sim.get(runner.evse_id)
        device = hw.token_reader if hw is not None else None
        if device is None:
            raise ControlRequestError(f"evse {runner.evse_id} has no simulated token reader")
        token = request.get("token")
        try:
            uid = bytes.fromhex(token) if isinstance(token, str) else b""
            device.tap(uid)
        except ValueError:
            raise ControlRequestError(
                f"tap needs 'token': a card UID in hex, 4, 7 or 10 bytes "
                f"(e.g. 04A2B3C4), got {str(token)[:40]!r}"
            ) from None
        log.info("sim tap: evse %d card %s...", runner.evse_id, uid.hex().upper()[:4])
        return self.evse_status(runner)

    # -- ISO 15118-20 -----------------------------------------------------------------
    def _v2g_server(
        self, evse: EvseConfig, runner: EvseRunner, caps: PowerStageCapabilities | None
    ) -> V2gServer:
        from chargepoint.adapters import iso15118_setup as setup  # noqa: PLC0415
        from chargepoint.adapters.v2g_server import V2gServer  # noqa: PLC0415
        from chargepoint.adapters.v2g_tls import enforce_v2g20_policy  # noqa: PLC0415

        cfg = self.config.iso15118
        assert cfg is not None
        if self._tls is None:
            self._tls = setup.tls_material(cfg)
        host, _address = setup.server_host(setup.ipv6_interface(cfg, evse))
        port = 0 if cfg.port == 0 else min(65535, cfg.port + evse.id - 1)
        return V2gServer(
            runner,
            setup.new_session(setup.secc_settings(self.config, evse, caps)),
            setup.arbiter_for(evse, caps),
            host=host,
            port=port,
            ssl_context=self._tls.server,
            tls_policy=enforce_v2g20_policy if self._tls.server is not None else None,
        )

    def _sdp_responders(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """One SDP responder per PLC interface; one on loopback for the first EVSE
        there (simulation: a single car, or an external EVCC on ``::1``)."""
        from chargepoint.adapters import iso15118_setup as setup  # noqa: PLC0415

        cfg = self.config.iso15118
        assert cfg is not None
        responders: list[tuple[str, Coroutine[Any, Any, None]]] = []
        interfaces: set[str] = set()
        for evse in self.config.evse:
            interface = setup.ipv6_interface(cfg, evse)
            if evse.id not in self.v2g or interface in interfaces:
                continue
            interfaces.add(interface)
            responders.append((f"sdp-{interface}", self._serve_sdp(evse.id, interface)))
        return responders

    async def _serve_sdp(self, evse_id: int, interface: str) -> None:
        """Announce EVSE ``evse_id``'s V2G server on ``interface``; with a PLC link only
        once SLAC reported link ready (ISO 15118-3 D-LINK_READY)."""
        from chargepoint.adapters import iso15118_setup as setup  # noqa: PLC0415
        from chargepoint.adapters.sdp_server import serve_sdp  # noqa: PLC0415
        from chargepoint.iso15118.sdp import SdpResponder, SeccEndpoint  # noqa: PLC0415

        cfg = self.config.iso15118
        assert cfg is not None
        server = self.v2g[evse_id]
        await server.listening.wait()
        assert server.bound_port is not None
        _host, address = setup.server_host(interface)
        assert address is not None
        endpoint = SeccEndpoint(address, server.bound_port)
        tls = server.ssl_context is not None
        responder = SdpResponder(
            tls=endpoint if tls else None,
            tcp=None if tls else endpoint,
            allow_plain_tcp=not tls,
        )
        loopback = interface == setup.LOOPBACK_INTERFACE
        slac = self.slac.get(evse_id)

        def ready(port: int) -> None:
            self.sdp_port = port
            self.sdp_ready.set()

        await serve_sdp(
            responder,
            interface=None if loopback else interface,
            port=cfg.sdp_port,
            bind_address="::1" if loopback else "::",
            join_multicast=not loopback,
            link_local_peers_only=not loopback,
            on_ready=ready,
            accepting=None if slac is None else slac.gate.ready.is_set,
        )

    async def _announce_ready(self, control_ready: asyncio.Event) -> None:
        await control_ready.wait()
        for runner in self.runners.values():
            await runner.ready.wait()
        for server in self.v2g.values():
            await server.listening.wait()
        # Startup objects (modules, grammars, config) never die: move them out of
        # the collector's way so full collections stay short on the safety path.
        gc.collect()
        gc.freeze()
        self.ready.set()
        self._notifier.notify("READY=1")
        self._confirm_release()
        log.info("station %s ready: %d EVSE(s)", self.config.station.id, len(self.runners))

    async def _wait_for_stop(self) -> None:
        await self._stop.wait()
        raise ServiceStop

    def _alive(self) -> bool:
        now = asyncio.get_running_loop().time()
        return all(
            r.safety_heartbeat is not None and now - r.safety_heartbeat < SAFETY_STALL_S
            for r in self.runners.values()
        )

    # -- control socket ------------------------------------------------------------------
    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "status":
            return self.status()
        runner = self._runner_for(request)
        if cmd == "tap":
            return await self._tap(runner, request)
        if cmd == "sim" and request.get("name") == "setpoint":
            return await self._setpoint(runner, request.get("args", []))
        if cmd == "sim":
            hw = self.sim.get(runner.evse_id)
            if hw is None:
                raise ControlRequestError(f"evse {runner.evse_id} has no simulated EV")
            name, args = request.get("name"), request.get("args", [])
            if not isinstance(name, str) or not isinstance(args, list):
                raise ControlRequestError("sim needs 'name' (string) and 'args' (list)")
            if name == "slac":
                if hw.plc_line is None:
                    raise ControlRequestError(f"evse {runner.evse_id} has no simulated PLC link")
                _slac_command(hw.plc_line, [str(a) for a in args])
                log.info("sim slac: %.200s", " ".join(str(a) for a in args))
                return self.evse_status(runner)
            if hw.car is not None and name in CAR_COMMANDS:
                _car_command(hw.car, name, [str(a) for a in args])
                log.info("sim car command: %s %s", name, " ".join(str(a) for a in args))
                return self.evse_status(runner)
            try:
                return hw.world.sim_command(name, [str(a) for a in args])
            except SimCommandError as exc:
                raise ControlRequestError(str(exc)) from exc
        if cmd == "v2g-timing":
            return self._v2g_timing(runner, request)
        event = _operator_event(cmd, request)
        await runner.submit(event)
        return self.evse_status(runner)

    async def _setpoint(self, runner: EvseRunner, args: list[Any]) -> dict[str, Any]:
        """Operator operating point for ISO 15118 Dynamic mode (W, negative = discharge)."""
        server = self.v2g.get(runner.evse_id)
        if server is None:
            raise ControlRequestError(f"evse {runner.evse_id} has no ISO 15118 session")
        if len(args) != 1:
            raise ControlRequestError("usage: setpoint POWER_W|off (negative = discharge)")
        text = str(args[0])
        if text in ("off", "none", "auto"):
            power: float | None = None
        else:
            try:
                power = float(text)
            except ValueError:
                raise ControlRequestError(f"setpoint: not a number: {text[:40]!r}") from None
            if not -MAX_SETPOINT_W <= power <= MAX_SETPOINT_W:
                raise ControlRequestError(
                    f"setpoint must be within +/-{MAX_SETPOINT_W:.0f} W, got {text[:40]}"
                )
        server.arbiter.set_setpoint(power)
        await server.limits_changed()
        log.info("evse %d: operator set-point %s", runner.evse_id, power)
        return self.evse_status(runner)

    def _v2g_timing(self, runner: EvseRunner, request: dict[str, Any]) -> dict[str, Any]:
        """Measurement hook (bench/secc_loop.py): V2G service time per request.

        ``{"action": "start", "samples": N}`` keeps the latest N, ``"take"`` returns
        them as ``[request, seconds]`` and empties the buffer, ``"stop"`` ends it.
        """
        server = self.v2g.get(runner.evse_id)
        if server is None:
            raise ControlRequestError(f"evse {runner.evse_id} has no ISO 15118 server")
        match request.get("action"):
            case "start":
                samples = request.get("samples", 100_000)
                if not isinstance(samples, int) or isinstance(samples, bool):
                    raise ControlRequestError("v2g-timing start: 'samples' must be an integer")
                try:
                    server.record_timing(samples)
                except ValueError as exc:
                    raise ControlRequestError(f"v2g-timing: {exc}") from None
                return {"recording": samples}
            case "take":
                return {"samples": [[name, s] for name, s in server.take_timing()]}
            case "stop":
                server.record_timing(0)
                return {"recording": 0}
        raise ControlRequestError("v2g-timing: action start [samples] | take | stop")

    def _runner_for(self, request: dict[str, Any]) -> EvseRunner:
        evse_id = request.get("evse", next(iter(self.runners)))
        if not isinstance(evse_id, int) or evse_id not in self.runners:
            raise ControlRequestError(
                f"unknown evse {str(evse_id)[:20]}; have {sorted(self.runners)}"
            )
        return self.runners[evse_id]

    def status(self) -> dict[str, Any]:
        return {
            "station": self.config.station.id,
            "evse": [self.evse_status(r) for r in self.runners.values()],
        }

    def evse_status(self, runner: EvseRunner) -> dict[str, Any]:
        ctl = runner.controller
        meter = runner.last_meter
        summary = runner.last_summary
        hw = self.sim.get(runner.evse_id)
        return {
            "id": runner.evse_id,
            "state": ctl.state.value,
            "cp": runner.last_pilot.cp_state.value if runner.last_pilot else None,
            "contactor_closed": runner.last_pilot.contactor_closed if runner.last_pilot else None,
            "permission": ctl.permission_granted,
            "pwm_duty_pct": ctl.pwm_duty_pct,
            "offered_current_a": ctl.offered_current_a(),
            "faults": [
                {"kind": f.kind.value, "detail": f.detail, "service_required": f.service_required}
                for f in ctl.latched_faults
            ],
            "meter": None
            if meter is None
            else {
                "import_energy_wh": meter.import_energy_wh,
                "export_energy_wh": meter.export_energy_wh,
                "power_w": meter.power_w,
                "voltage_v": meter.voltage_v,
                "current_a": meter.current_a,
            },
            "session_active": runner.sessions.active,
            "safety_loop_max_gap_s": runner.max_safety_gap_s,
            "last_session": None
            if summary is None
            else {
                "number": summary.number,
                "duration_s": summary.duration_s,
                "charging_s": summary.charging_s,
                "energy_imported_wh": summary.energy_imported_wh,
                "energy_exported_wh": summary.energy_exported_wh,
                "meter_start_import_wh": summary.meter_start.import_energy_wh,
                "meter_end_import_wh": summary.meter_end.import_energy_wh,
                "meter_start_export_wh": summary.meter_start.export_energy_wh,
                "meter_end_export_wh": summary.meter_end.export_energy_wh,
                "end_reason": summary.end_reason,
            },
            "ev": None if hw is None else hw.world.ev.state.to_dict(),
            "iso15118": self._v2g_status(runner.evse_id),
            "car": None if hw is None or hw.car is None else hw.car.status(),
            "car_report": None if hw is None else hw.car_report,
            "slac": None if runner.evse_id not in self.slac else self._slac_status(runner.evse_id),
            "token_reader": None
            if runner.evse_id not in self.token_auth
            else {"taps": self.token_auth[runner.evse_id].taps},
        }

    def _slac_status(self, evse_id: int) -> dict[str, Any]:
        slac = self.slac[evse_id]
        found = slac.status.to_dict()
        stats = slac.link.stats
        found["frames_rx"] = stats.frames_rx
        found["frames_tx"] = stats.frames_tx
        found["dropped"] = sum(stats.dropped.values())
        return found

    def _ev_soc(self, evse_id: int) -> float | None:
        """SoC the EV reported in the current ISO 15118-20 session (for OCPP meter values)."""
        server = self.v2g.get(evse_id)
        if server is None or not server.session.active:
            return None
        soc = server.stats.ev_soc_pct
        return None if soc is None else float(soc)

    def _v2g_status(self, evse_id: int) -> dict[str, Any] | None:
        server = self.v2g.get(evse_id)
        if server is None:
            return None
        session = server.session
        stats = server.stats
        sel = session.selection
        stage = server.runner.last_power_stage
        asked = session.last_power
        return {
            "state": session.state.value,
            "port": server.bound_port,
            "tls": server.ssl_context is not None,
            "service": None if sel is None else sel.service.name,
            "control_mode": None if sel is None else sel.control_mode,
            "last_request": stats.last_request,
            "ev_soc_pct": stats.ev_soc_pct,
            "ev_voltage_v": stats.ev_voltage_v,
            "target_current_a": stats.target_current_a,
            "target_power_w": stats.target_power_w,
            "evse_voltage_v": None if stage is None else stage.voltage_v,
            "evse_current_a": None if stage is None else stage.current_a,
            "setpoint_w": server.arbiter.setpoint_w,
            # what the session last asked of the power path (the stage then ramps)
            "commanded_current_a": None if asked is None else asked.current_a,
            "commanded_power_w": None if asked is None else asked.power_w,
            "sessions": stats.sessions,
            "last_end": stats.last_end,
        }


def _prepare_state_dir(path: Path) -> None:
    """Persistent state (OCPP queue, device model, keys) lives here, private to us."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _operator_event(cmd: str, request: dict[str, Any]) -> Event:
    match cmd:
        case "start":
            return StartCharging("operator")
        case "stop":
            return StopCharging("operator")
        case "clear-faults":
            return ClearFaults("operator", service=request.get("service") is True)
        case "available":
            return SetAvailable(bool(request.get("available", True)))
        case "limit":
            current = request.get("current_a")
            if (
                not isinstance(current, int | float)
                or isinstance(current, bool)
                or not 0.0 <= current <= MAX_LIMIT_A  # exact for huge ints; NaN fails too
            ):
                raise ControlRequestError(
                    f"limit needs 'current_a' in 0..{MAX_LIMIT_A:g} A, got {str(current)[:40]}"
                )
            return SetCurrentLimit(float(current))
    raise ControlRequestError(
        f"unknown command {cmd!r}; use status, sim, tap, start, stop, clear-faults, "
        "available, limit"
    )


CAR_COMMANDS = ("stop", "pause", "resume", "discharge", "departure", "target-soc", "car-fault")


def _car_command(car: SimulatedCar, name: str, args: list[str]) -> None:
    """``chargepoint sim`` commands for the ISO 15118-20 car (its driver's wishes)."""
    from hal.sim.evcc import CarFault  # noqa: PLC0415

    controls = car.controls

    def number(text: str, low: float, high: float, what: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ControlRequestError(f"{what}: not a number: {text[:40]!r}") from None
        if not low <= value <= high:
            raise ControlRequestError(f"{what} must be within {low:g}..{high:g}, got {value:g}")
        return value

    match name, args:
        case "stop", []:
            controls.stop = True
        case "pause", []:
            controls.pause = True
        case "resume", []:
            controls.pause = False
        case "discharge", ["on", *rest] if len(rest) <= 1:
            controls.discharge = True
            controls.discharge_power_w = number(rest[0], 0, 1e6, "power") if rest else None
        case "discharge", ["off"]:
            controls.discharge = False
        case "departure", [seconds]:
            controls.departure_in_s = number(seconds, 0, 7 * 86_400, "departure (s)")
        case "target-soc", [pct]:
            controls.target_soc_pct = number(pct, 0, 100, "target SoC (%)")
        case "car-fault", [kind]:
            try:
                controls.fault = None if kind == "off" else CarFault(kind)
            except ValueError:
                names = ", ".join(f.value for f in CarFault)
                raise ControlRequestError(f"car-fault: one of {names}, off") from None
        case _:
            raise ControlRequestError(
                "car commands: stop | pause | resume | discharge on [W] | discharge off | "
                "departure SECONDS | target-soc PCT | car-fault KIND|off"
            )


def _slac_command(line: SimulatedPlcLine, args: list[str]) -> None:
    """``chargepoint sim slac ...``: how the simulated car's SLAC behaves from its next
    plug-in (fail part-way, start late, a lossy or attenuating power line)."""
    from dataclasses import replace  # noqa: PLC0415

    from hal.plc.simulated import CarStops  # noqa: PLC0415

    def number(text: str, low: float, high: float, what: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ControlRequestError(f"slac {what}: not a number: {text[:40]!r}") from None
        if not low <= value <= high:
            raise ControlRequestError(f"slac {what} must be within {low:g}..{high:g}")
        return value

    car = line.car
    match args:
        case ["ok"]:
            car.behaviour = replace(car.behaviour, stops=CarStops.NEVER, start_delay_s=0.0)
            line.channel = replace(line.channel, loss=0.0)
        case ["fail", *where] if len(where) <= 1:
            try:
                stops = CarStops(where[0] if where else CarStops.AFTER_PARM.value)
            except ValueError:
                names = ", ".join(c.value for c in CarStops if c is not CarStops.NEVER)
                raise ControlRequestError(f"slac fail: one of {names}") from None
            car.behaviour = replace(car.behaviour, stops=stops)
        case ["slow", seconds]:
            delay = number(seconds, 0, 60, "slow (s)")
            car.behaviour = replace(car.behaviour, start_delay_s=delay)
        case ["loss", fraction]:
            line.channel = replace(line.channel, loss=number(fraction, 0, 0.9, "loss"))
        case ["attenuation", db]:
            line.channel = replace(line.channel, attenuation_db=number(db, 0, 80, "attenuation"))
        case _:
            raise ControlRequestError(
                "slac commands (from the next plug-in): ok | fail [after_parm|after_sounds|"
                "after_atten_char|after_match] | slow SECONDS | loss FRACTION | attenuation DB"
            )


async def _open(evse_id: int, setting: str, open_device: Callable[[], Awaitable[None]]) -> None:
    """Open one device; a failure names the setting (``evse 1 pilot_board: /dev/...``)."""
    try:
        await open_device()
    except HalInitError as exc:
        raise HalInitError(f"evse {evse_id} {setting}: {exc}") from None


async def _poll_until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition of the simulated plant (plain physics objects, no events)."""
    while not predicate():  # noqa: ASYNC110 - the plant has no events to wait on
        await asyncio.sleep(CAR_POLL_S)


async def _named(name: str, coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro``; tag any exception with the task's name for the crash report."""
    try:
        await coro
    except Exception as exc:
        exc.add_note(f"in task {name}")
        raise


def _task_name(group: BaseExceptionGroup[Exception]) -> str:
    for exc in group.exceptions:
        notes: list[str] = getattr(exc, "__notes__", [])
        for note in notes:
            if note.startswith("in task "):
                return note.removeprefix("in task ")
    return "unknown"
