"""HAL backends by name: the configuration's ``backend = "..."`` -> a factory.

A new driver is one module under ``hal/`` and one entry here (plus its config
model in :mod:`chargepoint.config`); the composition root (:mod:`chargepoint.app`)
only looks names up. Factories receive a :class:`Build`: the EVSE's
configuration, the simulated plant when the EVSE has simulated devices, and an
exit stack for what must be closed after the service stops. Real drivers import
their libraries lazily, so a station loads only what its configuration uses.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import can

from chargepoint.config import (
    CanPowerStageConfig,
    Config,
    EvseConfig,
    ModbusIsolationMonitorConfig,
    ModbusMeterConfig,
    PacketPlcConfig,
    Pn532TokenReaderConfig,
    SerialPilotBoardConfig,
    SimIsolationMonitorConfig,
    SimMeterConfig,
    SimPilotBoardConfig,
    SimPlcConfig,
    SimPowerStageConfig,
    SimTokenReaderConfig,
)
from chargepoint.errors import ConfigError
from hal.isolation import IsolationMonitor
from hal.meter import Meter
from hal.pilot import PilotBoard
from hal.power_stage import PowerStage, PowerStageCapabilities
from hal.sim.world import SimWorld
from hal.token_reader import TokenReader

if TYPE_CHECKING:
    from hal.imd_modbus.simulated import SimulatedModbusIsolationMonitor
    from hal.meter_modbus.simulated import SimulatedModbusMeter
    from hal.pilot_serial.simulated import SimulatedPilotBoard
    from hal.plc.link import PlcLink
    from hal.plc.simulated import SimulatedPlcLine
    from hal.power_can.simulated import SimulatedPowerModule
    from hal.sim.evcc import SimulatedCar
    from hal.sim.token_reader import SimulatedPn532

T = TypeVar("T")


@dataclass
class SimHardware:
    """Simulated devices of one EVSE (the far side of the wires), run by the service."""

    world: SimWorld
    board: SimulatedPilotBoard | None = None
    power_module: SimulatedPowerModule | None = None
    plc_line: SimulatedPlcLine | None = None  # evse.plc backend "sim": modem, line, car SLAC
    modbus_meter: SimulatedModbusMeter | None = None  # meter link "modbus": SDM630 on a pty
    modbus_imd: SimulatedModbusIsolationMonitor | None = None  # isoCHA425HV on a pty
    car: SimulatedCar | None = None  # with [iso15118]: the EV speaks ISO 15118-20
    token_reader: SimulatedPn532 | None = None  # a PN532 on a pty: `chargepoint sim tap`
    car_report: dict[str, Any] | None = None  # the car's view of its last session
    runnables: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        """What runs for the service's life: the plant and every simulated device."""
        return [self.world.run(), *(run() for run in self.runnables)]


@dataclass
class Build:
    config: Config
    evse: EvseConfig
    stack: AsyncExitStack
    sim: SimHardware | None  # None: this EVSE has no simulated device

    def need_sim(self, what: str) -> SimHardware:
        if self.sim is None:
            key = f"evse {self.evse.id}.{what}"
            raise ConfigError("evse", [(key, "backend 'sim' needs a simulated pilot board")])
        return self.sim


# -- pilot board ---------------------------------------------------------------------
def _serial_board(b: Build, cfg: Any) -> PilotBoard:
    from hal.pilot_serial.driver import SerialPilotBoard  # noqa: PLC0415

    assert isinstance(cfg, SerialPilotBoardConfig)
    return SerialPilotBoard(cfg.port, baudrate=cfg.baudrate)


def _sim_board(b: Build, cfg: Any) -> PilotBoard:
    from hal.pilot_serial.driver import SerialPilotBoard  # noqa: PLC0415
    from hal.pilot_serial.simulated import SimulatedPilotBoard  # noqa: PLC0415

    assert isinstance(cfg, SimPilotBoardConfig)
    sim = b.need_sim("pilot_board")
    board = SimulatedPilotBoard(sim.world.plant, transport="tcp" if cfg.link == "tcp" else "pty")
    sim.board = board
    sim.runnables.append(board.run)
    return SerialPilotBoard(board.url)


# -- power stage ---------------------------------------------------------------------
def _can_stage(b: Build, cfg: Any) -> PowerStage:
    from hal.power_can.driver import CanPowerStage  # noqa: PLC0415

    assert isinstance(cfg, CanPowerStageConfig)
    bus = can.Bus(
        interface=cfg.interface, channel=cfg.channel, bitrate=cfg.bitrate, ignore_config=True
    )
    b.stack.callback(bus.shutdown)
    return CanPowerStage(bus, cfg.node_id, off_current_threshold_a=cfg.off_current_threshold_a)


def _sim_stage(b: Build, cfg: Any) -> PowerStage:
    from hal.power_can.driver import CanPowerStage  # noqa: PLC0415
    from hal.power_can.simulated import SimulatedPowerModule  # noqa: PLC0415

    assert isinstance(cfg, SimPowerStageConfig)
    sim = b.need_sim("power_stage")
    channel = f"chargepoint-sim-evse{b.evse.id}-{id(b.stack)}"
    sim_bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    drv_bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    for bus in (sim_bus, drv_bus):
        b.stack.callback(bus.shutdown)
    caps = PowerStageCapabilities(
        min_voltage_v=cfg.min_voltage_v,
        max_voltage_v=cfg.max_voltage_v,
        max_export_current_a=cfg.max_export_current_a,
        max_export_power_w=cfg.max_export_power_w,
        max_import_current_a=cfg.max_import_current_a,
        max_import_power_w=cfg.max_import_power_w,
        bidirectional=cfg.bidirectional,
    )
    module = SimulatedPowerModule(sim_bus, 1, sim.world.plant, caps)
    sim.power_module = module
    sim.runnables.append(module.run)
    return CanPowerStage(drv_bus, 1)


# -- meter and isolation monitor ---------------------------------------------------------
def _sim_meter(b: Build, cfg: Any) -> Meter:
    assert isinstance(cfg, SimMeterConfig)
    sim = b.need_sim("meter")
    meter = sim.world.meter
    assert meter is not None
    if cfg.link == "direct":
        return meter
    from hal.meter_modbus import ModbusMeter  # noqa: PLC0415 - loads pymodbus
    from hal.meter_modbus.simulated import SimulatedModbusMeter  # noqa: PLC0415

    device = SimulatedModbusMeter(meter)  # an SDM630 on a pty, fed by the plant
    sim.modbus_meter = device
    sim.runnables.append(device.run)
    b.stack.callback(device.close)
    return ModbusMeter(device.port, unit_id=device.unit_id, parity="N")  # ptys take no parity


def _modbus_meter(b: Build, cfg: Any) -> Meter:
    from hal.meter_modbus import METER_MAPS, ModbusMeter  # noqa: PLC0415 - loads pymodbus

    assert isinstance(cfg, ModbusMeterConfig)
    return ModbusMeter(
        cfg.port,
        meter_map=METER_MAPS[cfg.model],
        unit_id=cfg.unit_id,
        baudrate=cfg.baudrate,
        parity=cfg.parity,
        stopbits=cfg.stopbits,
        timeout_s=cfg.timeout_s,
        reverse_direction=cfg.reverse_direction,
    )


def _sim_isolation(b: Build, cfg: Any) -> IsolationMonitor:
    assert isinstance(cfg, SimIsolationMonitorConfig)
    sim = b.need_sim("isolation_monitor")
    monitor = sim.world.isolation
    if cfg.link == "direct":
        return monitor
    from hal.imd_modbus.driver import ModbusIsolationMonitor  # noqa: PLC0415 - pymodbus
    from hal.imd_modbus.simulated import SimulatedModbusIsolationMonitor  # noqa: PLC0415

    device = SimulatedModbusIsolationMonitor(monitor)  # an isoCHA425HV on a pty
    sim.modbus_imd = device
    sim.runnables.append(device.run)
    b.stack.callback(device.close)
    return ModbusIsolationMonitor(device.port, unit_id=device.unit_id, parity="N")


def _modbus_isolation(b: Build, cfg: Any) -> IsolationMonitor:
    from hal.imd_modbus.driver import ModbusIsolationMonitor  # noqa: PLC0415 - pymodbus

    assert isinstance(cfg, ModbusIsolationMonitorConfig)
    return ModbusIsolationMonitor(
        cfg.port,
        unit_id=cfg.unit_id,
        baudrate=cfg.baudrate,
        parity=cfg.parity,
        stopbits=cfg.stopbits,
        timeout_s=cfg.timeout_s,
        prewarning_kohm=cfg.prewarning_kohm,
        alarm_kohm=cfg.alarm_kohm,
    )


# -- PLC modem ---------------------------------------------------------------------------
def _packet_plc(b: Build, cfg: Any) -> PlcLink:
    from hal.plc.driver import PacketPlcLink  # noqa: PLC0415

    assert isinstance(cfg, PacketPlcConfig)
    link = PacketPlcLink(cfg.interface)
    b.stack.push_async_callback(link.close)
    return link


def _sim_plc(b: Build, cfg: Any) -> PlcLink:
    from hal.plc.driver import PacketPlcLink  # noqa: PLC0415
    from hal.plc.simulated import (  # noqa: PLC0415
        CarBehaviour,
        CarStops,
        PlcChannel,
        SimulatedPlcLine,
        open_frame_pipe,
    )

    assert isinstance(cfg, SimPlcConfig)
    sim = b.need_sim("plc")
    sim_cfg = b.config.sim
    host, far = open_frame_pipe()
    line = SimulatedPlcLine(
        far,
        channel=PlcChannel(
            loss=sim_cfg.slac_loss if sim_cfg else 0.0,
            attenuation_db=sim_cfg.slac_attenuation_db if sim_cfg else 22.0,
        ),
        car=CarBehaviour(
            stops=CarStops(sim_cfg.slac_fail) if sim_cfg else CarStops.NEVER,
            start_delay_s=sim_cfg.slac_delay_s if sim_cfg else 0.0,
        ),
    )
    sim.plc_line = line
    sim.runnables.append(line.run)
    iso = b.config.iso15118
    assert iso is not None  # the config validator checked
    link = PacketPlcLink.over_socket(host, interface=iso.interface, host_mac=_local_mac(b.evse.id))
    b.stack.push_async_callback(link.close)
    return link


# -- token reader ------------------------------------------------------------------------
def _pn532_reader(b: Build, cfg: Any) -> TokenReader:
    from hal.pn532 import Pn532Reader  # noqa: PLC0415

    assert isinstance(cfg, Pn532TokenReaderConfig)
    return Pn532Reader(cfg.port, baudrate=cfg.baudrate, poll_interval_s=cfg.poll_interval_s)


def _sim_reader(b: Build, cfg: Any) -> TokenReader:
    from hal.pn532 import Pn532Reader  # noqa: PLC0415
    from hal.sim.token_reader import SimulatedPn532  # noqa: PLC0415

    assert isinstance(cfg, SimTokenReaderConfig)
    sim = b.need_sim("token_reader")
    device = SimulatedPn532()
    sim.token_reader = device
    sim.runnables.append(device.run)
    b.stack.callback(device.close)
    return Pn532Reader(device.url)


def _local_mac(evse_id: int) -> bytes:
    """A locally administered unicast MAC for a simulated PLC link's host end."""
    return bytes((0x02, 0x43, 0x50, 0x00, (evse_id >> 8) & 0xFF, evse_id & 0xFF))


PILOT_BOARDS: dict[str, Callable[[Build, Any], PilotBoard]] = {
    "serial": _serial_board,
    "sim": _sim_board,
}
POWER_STAGES: dict[str, Callable[[Build, Any], PowerStage]] = {
    "can": _can_stage,
    "sim": _sim_stage,
}
METERS: dict[str, Callable[[Build, Any], Meter]] = {"sim": _sim_meter, "modbus": _modbus_meter}
ISOLATION_MONITORS: dict[str, Callable[[Build, Any], IsolationMonitor]] = {
    "sim": _sim_isolation,
    "modbus": _modbus_isolation,
}
PLC_LINKS: dict[str, Callable[[Build, Any], PlcLink]] = {"packet": _packet_plc, "sim": _sim_plc}
TOKEN_READERS: dict[str, Callable[[Build, Any], TokenReader]] = {
    "pn532": _pn532_reader,
    "sim": _sim_reader,
}


def build(registry: dict[str, Callable[[Build, Any], T]], b: Build, cfg: Any) -> T:
    """The device for ``cfg`` (a config model with a ``backend`` name)."""
    name = cfg.backend
    try:
        factory = registry[name]
    except KeyError:  # the config models only admit registered names; belt and braces
        raise ConfigError("evse", [(f"evse {b.evse.id}", f"no backend {name!r}")]) from None
    return factory(b, cfg)
