"""Helpers for the ISO 15118-20 end-to-end tests.

The whole service runs in process on simulated hardware, exactly as
``chargepoint demo`` runs it: the pilot board on a pty, the power module on a
CAN virtual bus, the simulated car (our own EVCC) over real TCP/TLS 1.3 with
SDP on ``::1``. Tests drive it through the control socket only; what they
read besides the status are the simulated devices on the far side of the
wires (meter registers, power module, plant) and two recorders:

* :class:`CommandLog`: the runner's hardware commands, in the order the
  drivers received them (the board and power stage objects are wrapped, not
  mocked: every call goes on to the real driver);
* :class:`SeccLog`: the SECC session's actions (a listener of the V2G server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chargepoint.app import SimHardware, Station
from chargepoint.config import Config, parse_config
from chargepoint.iso15118.secc.actions import Action as SeccAction
from chargepoint.iso15118.secc.actions import SessionEnded
from hal.pilot import PilotBoard, PilotStatus
from hal.power_stage import PowerMode, PowerStage, PowerStageCapabilities, PowerStageStatus
from tests.e2e.conftest import ROOT, Client, stop_station

V2G_TOML = ROOT / "config" / "sim-v2g.toml"
STEP_TIMEOUT_S = 8.0
STOP_TIMEOUT_S = 15.0
STATUS_POLL_S = 0.05  # control-socket polls: light on a loaded machine
DEVICE_POLL_S = 0.01  # reads of the simulated devices (no I/O)
ENERGY_TOLERANCE_WH = 1e-6
OFF_CURRENT_A = 1.0  # the power stage's "off" threshold (CanPowerStage default)

Service = Literal["DC_BPT", "DC", "AC_BPT", "AC"]
Mode = Literal["scheduled", "dynamic"]

# A bidirectional AC EVSE (AC_BPT): 3 x 32 A, tethered Type 2 cable, simulated meter.
AC_EVSE = """\
[[evse]]
id = 1
kind = "ac"
phases = 3
nominal_voltage_v = 230.0
max_current_a = 32.0
autostart = true
pilot_board = { backend = "sim" }
meter = { backend = "sim" }

  [[evse.connector]]
  id = 1
  type = "cType2"
  tethered = true

"""


def _replace_once(text: str, old: str, new: str) -> str:
    """Edit the shipped config; fail loudly when it no longer has what we edit."""
    assert text.count(old) == 1, f"config/sim-v2g.toml: expected {old!r} once"
    return text.replace(old, new)


def v2g_config(
    state_dir: Path,
    pki_dir: Path,
    *,
    service: Service = "DC_BPT",
    control_mode: Mode = "dynamic",
    tls: bool = True,
    csms_port: int | None = None,
    simulated_car: bool = True,
) -> Config:
    """``config/sim-v2g.toml`` made private to one test: free ports, its own state.

    ``service`` is what the simulated car asks for; AC services get an AC EVSE.
    ``pki_dir`` may be shared between tests (the test PKI is created once).
    ``simulated_car=False``: no car of ours starts on plug-in (a test plays the EVCC).
    """
    text = V2G_TOML.read_text()
    text = _replace_once(text, "port = 64109", "port = 0")
    text = _replace_once(text, "sdp_port = 15118", "sdp_port = 0")
    text = _replace_once(text, 'tls = "on"', f'tls = "{"on" if tls else "off"}"')
    text = _replace_once(text, '"/tmp/chargepoint-sim-v2g/pki"', f'"{pki_dir}"')
    text = _replace_once(
        text, 'state_dir = "/tmp/chargepoint-sim-v2g"', f'state_dir = "{state_dir}"'
    )
    text = _replace_once(
        text,
        'hlc_service = "DC_BPT"',
        f'hlc_service = "{service}"\nsimulated_car = {"true" if simulated_car else "false"}',
    )
    text = _replace_once(text, 'control_mode = "dynamic"', f'control_mode = "{control_mode}"')
    if service.startswith("AC"):
        start, end = text.index("[[evse]]"), text.index("[iso15118]")
        text = text[:start] + AC_EVSE + text[end:]
    if csms_port is not None:
        text += (
            "\n[csms]\n"
            f'url = "ws://127.0.0.1:{csms_port}/ocpp"\n'
            "security_profile = 1\n"
            'subprotocols = ["ocpp2.0.1"]\n'
            'password = { value = "correct-horse-battery" }\n'
        )
    return parse_config(text, str(V2G_TOML))


@asynccontextmanager
async def running_station(config: Config) -> AsyncIterator[V2gClient]:
    """The service running as a task; stopped (in order) and awaited afterwards."""
    # A short directory: AF_UNIX paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="cp-e2e-") as sock_dir:
        station = Station(config, control_socket=Path(sock_dir) / "control.sock")
        task = asyncio.create_task(station.run())
        try:
            await asyncio.wait_for(station.ready.wait(), 15)
            yield V2gClient(station)
        finally:
            await stop_station(station, task, timeout_s=STOP_TIMEOUT_S)


def iso(st: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = st.get("iso15118") or {}
    return found


def slac(st: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = st.get("slac") or {}
    return found


def link_ready(st: dict[str, Any]) -> bool:
    return bool(slac(st).get("link_ready"))


def car(st: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = st.get("car") or {}
    return found


def car_session(st: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = car(st).get("session") or {}
    return found


class V2gClient(Client):
    """The control-socket client plus views of the simulated devices."""

    @property
    def hw(self) -> SimHardware:
        return self.station.sim[1]

    def registers(self) -> tuple[float, float]:
        """(import, export) Wh of the simulated meter, read on the device side now."""
        meter = self.hw.world.meter
        assert meter is not None
        return meter.import_energy_wh, meter.export_energy_wh

    async def until(
        self, what: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = STEP_TIMEOUT_S
    ) -> dict[str, Any]:
        """Poll the status until ``check`` holds; fail naming ``what``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        st = await self.evse()
        while not check(st):
            assert loop.time() < end, f"timed out waiting for {what}; last status {st}"
            await asyncio.sleep(STATUS_POLL_S)
            st = await self.evse()
        return st

    async def until_device(
        self, what: str, check: Callable[[], bool], timeout_s: float = STEP_TIMEOUT_S
    ) -> None:
        """Poll the simulated devices (plain objects without events) until ``check`` holds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not check():
            assert loop.time() < end, f"timed out waiting for {what}"
            await asyncio.sleep(DEVICE_POLL_S)

    async def imported_more(self, wh: float, what: str = "energy to the car") -> None:
        start = self.registers()[0]
        await self.until_device(what, lambda: self.registers()[0] >= start + wh)

    async def exported_more(self, wh: float, what: str = "energy from the car") -> None:
        start = self.registers()[1]
        await self.until_device(what, lambda: self.registers()[1] >= start + wh)

    async def plug_until_link(self) -> dict[str, Any]:
        """Plug in; the simulated car's modem matches ours (SLAC): the PLC link is ready."""
        await self.sim("plug")
        return await self.until("the PLC link (SLAC)", link_ready)

    async def plug_until_charge_loop(self) -> dict[str, Any]:
        await self.sim("plug")
        return await self.until("the charge loop", lambda s: iso(s).get("state") == "charge_loop")

    async def until_session_over(self) -> dict[str, Any]:
        """The car's run finished (report stored) and the SECC session is over.

        The SECC's core reaches `ended` when it answers SessionStopReq; the server
        records the reason (`last_end`) a moment later, after the answer is written,
        so both are waited for.
        """
        return await self.until(
            "the end of the session",
            lambda s: (
                s["car_report"] is not None
                and iso(s).get("state") in ("ended", "idle")
                and bool(iso(s).get("last_end"))
            ),
        )

    async def unplug_until_summary(self) -> dict[str, Any]:
        await self.sim("unplug")
        return await self.until(
            "the session summary",
            lambda s: (
                s["state"] == "idle"
                and s["last_session"] is not None
                and s["contactor_closed"] is False
            ),
        )

    def power_module_off(self) -> bool:
        module = self.hw.power_module
        return module is None or module.mode is PowerMode.OFF


def assert_safe(client: V2gClient, st: dict[str, Any]) -> None:
    """Safe state: no permission, contactors open, power stage off, no current."""
    assert st["permission"] is False, st
    assert st["faults"] == [], st["faults"]  # e.g. no welded contactor
    assert st["contactor_closed"] is False, st
    assert client.power_module_off()
    plant = client.hw.world.plant
    assert not plant.contactor_closed
    assert abs(plant.dc_current_a) < OFF_CURRENT_A
    assert plant.ac_power_w == 0.0


def assert_summary_matches_meter(st: dict[str, Any]) -> None:
    """The EVSE's session summary agrees with the meter's import and export registers."""
    summary, meter = st["last_session"], st["meter"]
    assert abs(summary["meter_end_import_wh"] - meter["import_energy_wh"]) <= ENERGY_TOLERANCE_WH
    assert abs(summary["meter_end_export_wh"] - meter["export_energy_wh"]) <= ENERGY_TOLERANCE_WH
    imported = summary["meter_end_import_wh"] - summary["meter_start_import_wh"]
    exported = summary["meter_end_export_wh"] - summary["meter_start_export_wh"]
    assert abs(summary["energy_imported_wh"] - imported) <= ENERGY_TOLERANCE_WH
    assert abs(summary["energy_exported_wh"] - exported) <= ENERGY_TOLERANCE_WH


# --------------------------------------------------------------------------- recorders


@dataclass(frozen=True, slots=True)
class Step:
    """One hardware command as the driver received it, with the far side's state then."""

    t: float  # loop time
    what: str  # "stage off", "stage off done", "permission on/off", "stage export/import"
    module_mode: PowerMode | None  # the simulated power module's mode at that moment
    dc_current_a: float  # plant current at that moment


@dataclass
class CommandLog:
    steps: list[Step] = field(default_factory=list)

    def index(self, what: str) -> int:
        """Index of the first ``what``; -1 if none."""
        return next((i for i, s in enumerate(self.steps) if s.what == what), -1)

    def whats(self) -> list[str]:
        return [s.what for s in self.steps]


class _Recorder:
    def __init__(self, log: CommandLog, hw: SimHardware) -> None:
        self._log = log
        self._hw = hw

    def _note(self, what: str) -> None:
        module = self._hw.power_module
        self._log.steps.append(
            Step(
                asyncio.get_running_loop().time(),
                what,
                None if module is None else module.mode,
                self._hw.world.plant.dc_current_a,
            )
        )


class RecordingBoard(_Recorder):
    """A :class:`PilotBoard` that notes contactor-permission commands, then forwards them."""

    def __init__(self, inner: PilotBoard, log: CommandLog, hw: SimHardware) -> None:
        super().__init__(log, hw)
        self.inner = inner

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def read_status(self) -> PilotStatus:
        return await self.inner.read_status()

    async def set_pwm(self, duty_pct: float) -> None:
        await self.inner.set_pwm(duty_pct)

    async def set_x1(self) -> None:
        await self.inner.set_x1()

    async def set_state_f(self) -> None:
        await self.inner.set_state_f()

    async def set_contactor_permission(self, granted: bool) -> None:
        self._note(f"permission {'on' if granted else 'off'}")
        await self.inner.set_contactor_permission(granted)

    async def set_lock(self, locked: bool) -> None:
        await self.inner.set_lock(locked)

    async def clear_faults(self) -> None:
        await self.inner.clear_faults()

    async def send_keepalive(self) -> None:
        await self.inner.send_keepalive()


class ForwardingStage:
    """A :class:`PowerStage` that forwards every call to the real driver; tests
    override the calls they watch or slow down."""

    def __init__(self, inner: PowerStage) -> None:
        self.inner = inner

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def capabilities(self) -> PowerStageCapabilities:
        return await self.inner.capabilities()

    async def set_export_limits(self, voltage_v: float, current_a: float, power_w: float) -> None:
        await self.inner.set_export_limits(voltage_v, current_a, power_w)

    async def set_import_limits(self, voltage_v: float, current_a: float, power_w: float) -> None:
        await self.inner.set_import_limits(voltage_v, current_a, power_w)

    async def set_mode(self, mode: PowerMode) -> None:
        await self.inner.set_mode(mode)

    async def read_status(self) -> PowerStageStatus:
        return await self.inner.read_status()


class RecordingStage(ForwardingStage, _Recorder):
    """A :class:`PowerStage` that notes mode changes (and when Off is confirmed)."""

    def __init__(self, inner: PowerStage, log: CommandLog, hw: SimHardware) -> None:
        ForwardingStage.__init__(self, inner)
        _Recorder.__init__(self, log, hw)

    async def set_mode(self, mode: PowerMode) -> None:
        self._note(f"stage {mode.value}")
        await self.inner.set_mode(mode)
        if mode is PowerMode.OFF:
            self._note("stage off done")  # OFF returns once the current is below threshold


def record_commands(station: Station, evse_id: int = 1) -> CommandLog:
    """Wrap the runner's board and power stage so every command is noted in order."""
    runner = station.runners[evse_id]
    hw = station.sim[evse_id]
    log = CommandLog()
    devices = runner.devices
    stage = devices.power_stage
    runner.devices = dataclasses.replace(
        devices,
        board=RecordingBoard(devices.board, log, hw),
        power_stage=None if stage is None else RecordingStage(stage, log, hw),
    )
    return log


@dataclass
class SeccLog:
    """What the SECC session did (its actions), with loop times."""

    actions: list[tuple[float, SeccAction]] = field(default_factory=list)

    def ended(self) -> list[SessionEnded]:
        return [a for _, a in self.actions if isinstance(a, SessionEnded)]

    def ended_at(self) -> float | None:
        return next((t for t, a in self.actions if isinstance(a, SessionEnded)), None)


def record_secc(station: Station, evse_id: int = 1) -> SeccLog:
    log = SeccLog()

    def listener(_evse: int, action: SeccAction) -> None:
        log.actions.append((asyncio.get_running_loop().time(), action))

    station.v2g[evse_id].listeners.append(listener)
    return log
