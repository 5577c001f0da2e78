"""CanPowerStage driver against the simulated module, on virtual buses and slcan/TCP."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can
import pytest

from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.power_can.codec import SignalRangeError, power_module_frames
from hal.power_can.driver import CanPowerStage
from hal.power_can.simulated import SimulatedPowerModule
from hal.power_can.slcan_server import SlcanTcpServer, slcan_client_bus
from hal.power_stage import (
    PowerMode,
    PowerStage,
    PowerStageCapabilities,
    PowerStageFault,
    PowerStageStatus,
)
from hal.sim.plant import Plant

NODE = 5
CAPS = PowerStageCapabilities(
    min_voltage_v=150.0,
    max_voltage_v=1000.0,
    max_export_current_a=100.0,
    max_export_power_w=50_000.0,
    max_import_current_a=80.0,
    max_import_power_w=30_000.0,
    bidirectional=True,
)
BATTERY_V = 400.0
R_OHM = 0.05  # module's default output resistance
WAIT_S = 5.0  # generous: the machine may be loaded
REPO = Path(__file__).resolve().parents[2]
# Driver timeouts relaxed for a loaded CI machine; tests that are about a
# timeout override them.
DRIVER_KWARGS: dict[str, Any] = {
    "response_timeout_s": 2.0,
    "status_timeout_s": 2.0,
    "off_timeout_s": 3.0,
}


def virtual_bus(channel: str) -> can.BusABC:
    return can.Bus(interface="virtual", channel=channel, ignore_config=True)


def new_channel() -> str:
    return f"power-can-test-{uuid.uuid4().hex}"


def connected_plant(battery_v: float = BATTERY_V) -> Plant:
    return Plant(battery_voltage_v=battery_v, contactor_closed=True, ev_dc_contactor_closed=True)


@dataclass
class Rig:
    channel: str
    plant: Plant
    module: SimulatedPowerModule
    driver: CanPowerStage
    driver_bus: can.BusABC


@contextlib.asynccontextmanager
async def module_running(
    channel: str, plant: Plant, caps: PowerStageCapabilities = CAPS, **kwargs: Any
) -> AsyncIterator[SimulatedPowerModule]:
    bus = virtual_bus(channel)
    module = SimulatedPowerModule(bus, NODE, plant, caps, **kwargs)
    task = asyncio.create_task(module.run())
    try:
        yield module
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        bus.shutdown()


@contextlib.asynccontextmanager
async def make_rig(
    *,
    plant: Plant | None = None,
    caps: PowerStageCapabilities = CAPS,
    module_kwargs: dict[str, Any] | None = None,
    driver_kwargs: dict[str, Any] | None = None,
) -> AsyncIterator[Rig]:
    channel = new_channel()
    plant = plant if plant is not None else connected_plant()
    async with module_running(channel, plant, caps, **(module_kwargs or {})) as module:
        driver_bus = virtual_bus(channel)
        driver = CanPowerStage(driver_bus, NODE, **{**DRIVER_KWARGS, **(driver_kwargs or {})})
        try:
            await driver.open()
            yield Rig(channel, plant, module, driver, driver_bus)
        finally:
            await driver.close()
            driver_bus.shutdown()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as r:
        yield r


async def wait_status(
    driver: CanPowerStage,
    predicate: Callable[[PowerStageStatus], bool],
    timeout_s: float = WAIT_S,
    seen: list[PowerStageStatus] | None = None,
) -> PowerStageStatus:
    """Read statuses until one satisfies ``predicate``; fail with the last one."""
    last: PowerStageStatus | None = None

    async def loop() -> PowerStageStatus:
        nonlocal last
        while True:
            last = await driver.read_status()
            if seen is not None:
                seen.append(last)
            if predicate(last):
                return last

    try:
        return await asyncio.wait_for(loop(), timeout_s)
    except TimeoutError:
        pytest.fail(f"condition not reached within {timeout_s} s; last status {last}")


async def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Poll simulator state (plain attributes: there is no event to await)."""

    async def loop() -> None:
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout_s)


# -- open / capabilities ----------------------------------------------------


async def test_driver_satisfies_the_power_stage_protocol(rig: Rig) -> None:
    stage: PowerStage = rig.driver
    assert await stage.capabilities() == CAPS
    status = await stage.read_status()
    assert status.mode is PowerMode.OFF
    assert status.faults == PowerStageFault.NONE


async def test_open_without_a_module_times_out_and_leaves_the_bus_alone() -> None:
    bus = virtual_bus(new_channel())
    driver = CanPowerStage(bus, NODE, response_timeout_s=0.1, open_attempts=2)
    with pytest.raises(HalTimeoutError, match="no power module answered"):
        await driver.open()
    assert not driver.is_open
    bus.send(can.Message(arbitration_id=0x123, is_extended_id=False, data=b"\x00"))
    await driver.close()
    bus.shutdown()


async def test_open_fails_on_an_unusable_bus() -> None:
    def broken_factory() -> can.BusABC:
        raise can.CanInitializationError("no such adapter")

    driver = CanPowerStage(broken_factory, NODE)
    with pytest.raises(HalInitError, match="no such adapter"):
        await driver.open()


async def test_import_is_refused_by_a_unidirectional_module() -> None:
    caps = PowerStageCapabilities(150.0, 500.0, 50.0, 20_000.0, 0.0, 0.0, bidirectional=False)
    async with make_rig(caps=caps) as r:
        assert (await r.driver.capabilities()).bidirectional is False
        with pytest.raises(HalOperationError, match="not bidirectional"):
            await r.driver.set_mode(PowerMode.IMPORT)


# -- export / import ----------------------------------------------------------


async def test_export_ramps_to_the_current_limit_into_the_battery(rig: Rig) -> None:
    await rig.driver.set_export_limits(420.0, 40.0, 100_000.0)
    await rig.driver.set_mode(PowerMode.EXPORT)
    seen: list[PowerStageStatus] = []
    status = await wait_status(rig.driver, lambda s: s.current_a >= 39.95, seen=seen)
    assert status.mode is PowerMode.EXPORT
    assert max(s.current_a for s in seen) <= 40.05  # CC: never above the limit
    assert status.voltage_v == pytest.approx(BATTERY_V + 40.0 * R_OHM, abs=0.15)
    assert rig.plant.dc_current_a == pytest.approx(40.0, abs=0.05)
    assert rig.plant.dc_voltage_v == pytest.approx(BATTERY_V + 40.0 * R_OHM, abs=0.1)
    assert status.power_w > 0


async def test_export_is_clamped_by_power_and_capability_limits(rig: Rig) -> None:
    await rig.driver.set_export_limits(600.0, 80.0, 8_000.0)
    await rig.driver.set_mode(PowerMode.EXPORT)
    seen: list[PowerStageStatus] = []
    await wait_status(rig.driver, lambda s: s.power_w > 7_900.0, seen=seen)
    assert max(s.power_w for s in seen) <= 8_000.0 * 1.01
    # A current limit beyond the capability is clamped to it.
    await rig.driver.set_export_limits(600.0, 500.0, 600_000.0)
    await wait_status(rig.driver, lambda s: s.current_a >= 99.95)
    await asyncio.sleep(0.1)
    assert rig.module.current_a == pytest.approx(CAPS.max_export_current_a)


async def test_export_open_circuit_follows_the_target_voltage() -> None:
    async with make_rig(plant=Plant(contactor_closed=False)) as r:
        await r.driver.set_export_limits(250.0, 10.0, 10_000.0)
        await r.driver.set_mode(PowerMode.EXPORT)
        status = await wait_status(r.driver, lambda s: s.voltage_v >= 249.95)
        assert status.current_a == 0.0
        assert r.plant.dc_current_a == 0.0


async def test_import_gives_negative_current_down_to_the_min_voltage(rig: Rig) -> None:
    await rig.driver.set_import_limits(350.0, 30.0, 100_000.0)
    await rig.driver.set_mode(PowerMode.IMPORT)
    status = await wait_status(rig.driver, lambda s: s.current_a <= -29.95)
    assert status.mode is PowerMode.IMPORT
    assert status.power_w < 0
    assert rig.plant.dc_current_a == pytest.approx(-30.0, abs=0.05)
    # Raising the minimum voltage to just below the battery throttles the
    # discharge: the voltage across the output resistance settles at the limit.
    await rig.driver.set_import_limits(BATTERY_V - 0.5, 30.0, 100_000.0)
    status = await wait_status(rig.driver, lambda s: -10.5 < s.current_a < -9.5, timeout_s=WAIT_S)
    assert status.voltage_v == pytest.approx(BATTERY_V - 0.5, abs=0.15)


# -- switching off ----------------------------------------------------------


async def test_set_mode_off_returns_only_once_the_current_is_below_threshold() -> None:
    # A slow ramp-down (200 A/s: 40 A takes 0.2 s) makes an early return visible.
    async with make_rig(module_kwargs={"off_current_slew_a_per_s": 200.0}) as r:
        await r.driver.set_export_limits(420.0, 40.0, 100_000.0)
        await r.driver.set_mode(PowerMode.EXPORT)
        await wait_status(r.driver, lambda s: s.current_a >= 39.95)
        await r.driver.set_mode(PowerMode.OFF)
        last = r.driver.last_status
        assert last is not None
        assert last.mode is PowerMode.OFF
        assert abs(last.current_a) < r.driver.off_current_threshold_a
        assert abs(r.plant.dc_current_a) < r.driver.off_current_threshold_a


async def test_set_mode_off_times_out_when_the_current_does_not_fall() -> None:
    async with make_rig(
        module_kwargs={"off_current_slew_a_per_s": 5.0},
        driver_kwargs={"off_timeout_s": 0.3},
    ) as r:
        await r.driver.set_export_limits(420.0, 40.0, 100_000.0)
        await r.driver.set_mode(PowerMode.EXPORT)
        await wait_status(r.driver, lambda s: s.current_a >= 39.95)
        with pytest.raises(HalTimeoutError, match="still carries"):
            await r.driver.set_mode(PowerMode.OFF)
        r.module.off_current_slew_a_per_s = 2000.0  # let close() succeed quickly


# -- faults and keep-alive --------------------------------------------------


async def test_injected_fault_turns_the_output_off_and_is_reported(rig: Rig) -> None:
    await rig.driver.set_export_limits(420.0, 40.0, 100_000.0)
    await rig.driver.set_mode(PowerMode.EXPORT)
    await wait_status(rig.driver, lambda s: s.current_a > 20.0)
    rig.module.inject_fault(PowerStageFault.OVER_TEMPERATURE)
    status = await wait_status(rig.driver, lambda s: bool(s.faults))
    assert status.faults == PowerStageFault.OVER_TEMPERATURE
    assert status.mode is PowerMode.OFF
    await wait_status(rig.driver, lambda s: s.current_a == 0.0)
    with pytest.raises(HalOperationError, match="OVER_TEMPERATURE"):
        await rig.driver.set_mode(PowerMode.EXPORT)
    rig.module.clear_faults()
    status = await wait_status(rig.driver, lambda s: not s.faults)
    assert status.mode is PowerMode.OFF  # stays off until commanded again
    await rig.driver.set_mode(PowerMode.EXPORT)
    await wait_status(rig.driver, lambda s: s.current_a > 1.0)


async def test_module_switches_off_and_flags_communication_on_heartbeat_loss() -> None:
    """Host side played by raw frames, so the heartbeat can be stopped at will."""
    channel = new_channel()
    plant = connected_plant()
    frames = power_module_frames(NODE)

    def msg(name: str, **values: float) -> can.Message:
        frame = frames.by_name(name)
        return can.Message(
            arbitration_id=frame.frame_id, is_extended_id=False, data=frame.encode(values)
        )

    async with module_running(channel, plant) as module:
        host = virtual_bus(channel)
        try:
            heartbeat = host.send_periodic(msg("HOST_HEARTBEAT", protocol_version=1), 0.05)
            await wait_until(lambda: module.heartbeat_count > 0)
            host.send(
                msg(
                    "EXPORT_LIMITS",
                    target_voltage_v=420.0,
                    current_limit_a=30.0,
                    power_limit_w=100_000.0,
                )
            )
            host.send(msg("CONTROL", mode=1))
            await wait_until(lambda: module.current_a > 10.0)
            heartbeat.stop()
            await wait_until(lambda: PowerStageFault.COMMUNICATION in module.faults)
            assert module.mode is PowerMode.OFF
            await wait_until(lambda: plant.dc_current_a == 0.0)
            # The STATUS on the wire says so too.
            status_frame = frames.by_name("STATUS")

            def first_faulted_status() -> dict[str, float]:
                while True:
                    received = host.recv(timeout=WAIT_S)
                    assert received is not None, "no STATUS with fault bits"
                    if received.arbitration_id == status_frame.frame_id:
                        values = status_frame.decode(received.data)
                        if values["faults"]:
                            return values

            values = await asyncio.to_thread(first_faulted_status)
            assert values["faults"] == 1 << 6  # COMMUNICATION
            assert values["mode"] == 0.0
            # Heartbeat back: fault clears, output stays off until commanded.
            heartbeat = host.send_periodic(msg("HOST_HEARTBEAT", protocol_version=1), 0.05)
            await wait_until(lambda: not module.faults)
            assert module.mode is PowerMode.OFF
            heartbeat.stop()
        finally:
            host.shutdown()


async def test_driver_sees_communication_fault_when_its_heartbeat_is_too_slow() -> None:
    async with make_rig(driver_kwargs={"heartbeat_period_s": 5.0}) as r:
        status = await wait_status(r.driver, lambda s: bool(s.faults))
        assert status.faults == PowerStageFault.COMMUNICATION
        with pytest.raises(HalOperationError, match="COMMUNICATION"):
            await r.driver.set_mode(PowerMode.EXPORT)


# -- robustness ---------------------------------------------------------------


async def test_malformed_frames_are_logged_counted_and_survived(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    status_id = power_module_frames(NODE).by_name("STATUS").frame_id
    control_id = power_module_frames(NODE).by_name("CONTROL").frame_id
    other_node_status = power_module_frames(NODE + 1).by_name("STATUS").frame_id
    intruder = virtual_bus(rig.channel)
    try:
        with caplog.at_level(logging.WARNING, logger="hal.power_can"):
            for data in (b"\x01\x02\x03", bytes([9, 0, 0, 0, 0, 0, 0, 0])):
                intruder.send(
                    can.Message(arbitration_id=status_id, is_extended_id=False, data=data)
                )
            # Another node's traffic and the host's own frames are not ours to judge.
            intruder.send(
                can.Message(arbitration_id=other_node_status, is_extended_id=False, data=b"\xff")
            )
            # The module counts what it cannot use, too.
            intruder.send(
                can.Message(arbitration_id=control_id, is_extended_id=False, data=b"\x07")
            )
            await wait_until(
                lambda: (
                    rig.driver.malformed_frame_count >= 2 and rig.module.malformed_frame_count >= 1
                )
            )
            status = await rig.driver.read_status()
        assert status.mode is PowerMode.OFF
        assert rig.driver.malformed_frame_count == 2
        assert rig.module.malformed_frame_count == 1
        text = caplog.text
        assert "01 02 03" in text
        assert "expected 8 data bytes, got 3" in text
        assert "signal mode: 9" in text
    finally:
        intruder.shutdown()


async def test_limits_are_validated_before_sending(rig: Rig) -> None:
    with pytest.raises(ValueError):
        await rig.driver.set_export_limits(-1.0, 10.0, 1000.0)
    with pytest.raises(ValueError):
        await rig.driver.set_import_limits(300.0, float("nan"), 1000.0)
    with pytest.raises(SignalRangeError):
        await rig.driver.set_export_limits(7000.0, 10.0, 1000.0)


async def test_close_is_idempotent_and_leaves_a_borrowed_bus_open() -> None:
    channel = new_channel()
    async with module_running(channel, connected_plant()):
        bus = virtual_bus(channel)
        driver = CanPowerStage(bus, NODE, **DRIVER_KWARGS)
        await driver.open()
        await driver.close()
        await driver.close()
        with pytest.raises(HalOperationError, match="not open"):
            await driver.read_status()
        bus.send(can.Message(arbitration_id=0x123, is_extended_id=False, data=b""))
        # ...and it can be opened again on the same bus.
        await driver.open()
        assert driver.is_open
        await driver.close()
        bus.shutdown()


# -- slcan over TCP -----------------------------------------------------------


async def test_driver_reaches_the_module_over_slcan_tcp() -> None:
    channel = new_channel()
    plant = connected_plant()
    server_bus = virtual_bus(channel)
    try:
        async with module_running(channel, plant), SlcanTcpServer(server_bus, port=0) as server:
            driver = CanPowerStage(
                functools.partial(slcan_client_bus, server.port), NODE, **DRIVER_KWARGS
            )
            try:
                await driver.open()
                assert server.client_count == 1
                assert await driver.capabilities() == CAPS
                await driver.set_export_limits(420.0, 25.0, 100_000.0)
                await driver.set_mode(PowerMode.EXPORT)
                await wait_status(driver, lambda s: s.current_a >= 24.95)
                assert plant.dc_current_a == pytest.approx(25.0, abs=0.05)
                await driver.set_mode(PowerMode.OFF)
                assert abs(plant.dc_current_a) < 1.0
            finally:
                await driver.close()
            assert driver.malformed_frame_count == 0
            assert server.bad_line_count == 0
            await wait_until(lambda: server.client_count == 0)
    finally:
        server_bus.shutdown()


async def test_slcan_server_speaks_the_lawicel_subset() -> None:
    channel = new_channel()
    server_bus = virtual_bus(channel)
    peer = virtual_bus(channel)
    try:
        async with SlcanTcpServer(server_bus) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)

            async def reply() -> bytes:
                """One reply: up to CR (ok / data) or a lone BEL (error)."""
                out = b""
                while not out.endswith((b"\r", b"\a")):
                    out += await asyncio.wait_for(reader.readexactly(1), WAIT_S)
                return out

            async def ask(line: bytes) -> bytes:
                writer.write(line + b"\r")
                await writer.drain()
                return await reply()

            assert await ask(b"V") == b"V1013\r"
            assert await ask(b"N") == b"NSIM0\r"
            assert await ask(b"t1231AB") == b"\a"  # channel closed
            assert await ask(b"S6") == b"\r"
            assert await ask(b"") == b"\r"
            assert await ask(b"O") == b"\r"
            assert await ask(b"S6") == b"\a"  # not while open
            assert await ask(b"t1232ABCD") == b"z\r"
            received = await asyncio.to_thread(peer.recv, WAIT_S)
            assert received is not None
            assert (received.arbitration_id, bytes(received.data)) == (0x123, b"\xab\xcd")
            assert await ask(b"T1ABCDEF00") == b"Z\r"
            assert await ask(b"t12321") == b"\a"  # DLC and data disagree
            assert await ask(b"hello") == b"\a"
            # Bus -> client
            peer.send(can.Message(arbitration_id=0x7FF, is_extended_id=False, data=b"\x01\x02"))
            assert await reply() == b"t7FF20102\r"
            peer.send(can.Message(arbitration_id=0x1234567, is_extended_id=True, data=b""))
            assert await reply() == b"T012345670\r"
            assert server.bad_line_count == 4
            writer.close()
            await writer.wait_closed()
    finally:
        peer.shutdown()
        server_bus.shutdown()


@pytest.mark.slow
async def test_module_in_another_process_over_slcan() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hal.power_can.slcan_server",
        "--node-id",
        str(NODE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10.0)
        assert line.startswith(b"PORT "), line
        port = int(line.split()[1])
        driver = CanPowerStage(functools.partial(slcan_client_bus, port), NODE, **DRIVER_KWARGS)
        try:
            await driver.open()
            await driver.set_import_limits(300.0, 20.0, 100_000.0)
            await driver.set_mode(PowerMode.IMPORT)
            await wait_status(driver, lambda s: s.current_a <= -19.95)
        finally:
            await driver.close()
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10.0)
