"""The PilotBoard contract, run against the simulated board and, when present,
a real board.

Set ``CHARGEPOINT_HW_PILOT_PORT`` (e.g. ``/dev/ttyAMA0``) on a test rig with a
board and *no vehicle connected* (an EV simulator box in state A or B is fine):
the same tests then rerun against the hardware. They never grant contactor
permission while a vehicle could be present.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from hal.pilot import PilotBoard, PilotStatus
from hal.pilot_serial.driver import SerialPilotBoard
from hal.pilot_serial.simulated import SimulatedPilotBoard
from hal.sim.plant import Plant

HW_PORT = os.environ.get("CHARGEPOINT_HW_PILOT_PORT")
TIMEOUT_S = 5.0


@pytest.fixture(params=["simulated", pytest.param("hardware", marks=pytest.mark.hardware)])
async def board(request: pytest.FixtureRequest) -> AsyncIterator[PilotBoard]:
    if request.param == "hardware":
        if not HW_PORT:
            pytest.skip("set CHARGEPOINT_HW_PILOT_PORT to run against a real pilot board")
        driver = SerialPilotBoard(HW_PORT)
        await driver.open()
        try:
            yield driver
        finally:
            await driver.close()
        return
    sim = SimulatedPilotBoard(Plant())
    task = asyncio.create_task(sim.run())
    driver = SerialPilotBoard(sim.url)
    await driver.open()
    try:
        yield driver
    finally:
        await driver.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def status_where(board: PilotBoard, check: object) -> PilotStatus:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            await board.send_keepalive()
            status = await board.read_status()
            if check(status):  # type: ignore[operator]
                return status


async def test_reports_status_with_keepalive(board: PilotBoard) -> None:
    status = await status_where(board, lambda s: True)
    assert status.cp_state in (CpState.A, CpState.B)
    assert not status.contactor_closed


async def test_pilot_output_follows_commands(board: PilotBoard) -> None:
    await board.set_pwm(16.0)
    status = await status_where(board, lambda s: s.output is PilotOutput.PWM)
    assert status.duty_pct == pytest.approx(16.0, abs=0.01)
    await board.set_state_f()
    await status_where(board, lambda s: s.output is PilotOutput.F)
    await board.set_x1()
    await status_where(board, lambda s: s.output is PilotOutput.X1)


async def test_permission_without_vehicle_keeps_contactor_open(board: PilotBoard) -> None:
    await board.set_pwm(16.0)
    await board.set_contactor_permission(True)  # no EV in C: the board must not close
    for _ in range(5):
        status = await status_where(board, lambda s: True)
        assert not status.contactor_closed
    await board.set_contactor_permission(False)
    status = await status_where(board, lambda s: not s.contactor_permission)
    assert not status.contactor_closed
