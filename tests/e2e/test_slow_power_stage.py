"""A power stage that takes 400 ms to switch off must not starve the board's keep-alive.

The whole service on simulated hardware (``config/sim-v2g.toml``): the pilot board
on a pty, the power module on a CAN virtual bus. The runner's power stage is
wrapped so that Off takes 400 ms before the real driver even sends it, longer
than the board's 300 ms keep-alive timeout. The board (the simulated
microcontroller on the far side of the serial line) records the longest
silence on its wire; it must stay short, and the board must not trip on a lost
keep-alive while the power path goes off.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from hal.power_stage import PowerMode
from tests.e2e.iso15118_support import ForwardingStage, iso, running_station, v2g_config

SLOW_OFF_S = 0.4
MAX_GAP_S = 0.15


class SlowOffStage(ForwardingStage):
    """The real driver, except that switching off is confirmed only ``SLOW_OFF_S`` later."""

    off_calls = 0

    async def set_mode(self, mode: PowerMode) -> None:
        await self.inner.set_mode(mode)
        if mode is PowerMode.OFF:  # commanded; the confirmation of a slow ramp-down comes late
            self.off_calls += 1
            await asyncio.sleep(SLOW_OFF_S)  # the runner bounds its wait


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slow-stage") / "pki"


async def test_slow_power_off_keeps_the_board_keepalive_flowing(
    tmp_path: Path, pki_dir: Path
) -> None:
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as client:
        runner = client.station.runners[1]
        stage = runner.devices.power_stage
        assert stage is not None
        slow = SlowOffStage(stage)
        runner.devices = dataclasses.replace(runner.devices, power_stage=slow)
        board = client.hw.board
        assert board is not None
        await client.plug_until_charge_loop()
        await client.imported_more(0.2)
        board.max_host_gap_s = 0.0
        await client.sim("stop")  # PowerDelivery(Stop): power stage Off, then contactors open
        st = await client.until_session_over()
        assert slow.off_calls >= 1
        await client.sim("unplug")
        st = await client.until("idle", lambda s: s["state"] == "idle")
        assert board.max_host_gap_s < MAX_GAP_S, board.max_host_gap_s
        assert st["faults"] == [], st["faults"]  # no keep-alive loss latched anywhere
        assert iso(st)["state"] in ("ended", "idle")

        # a fault while charging: Off (slow) and permission off, still no keep-alive gap
        await client.plug_until_charge_loop()
        board.max_host_gap_s = 0.0
        await client.sim("fault", "rcd-dc", "on")
        st = await client.until("the fault", lambda s: s["faults"] != [])
        assert {f["kind"] for f in st["faults"]} == {"rcd_dc"}
        await client.until("contactors open", lambda s: not s["contactor_closed"])
        await asyncio.sleep(0.6)
        assert board.max_host_gap_s < MAX_GAP_S, board.max_host_gap_s
