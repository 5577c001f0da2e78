"""A pilot board that is gone (issue 10 item 6): the reconnect backs off and logs at
a bounded rate, the keep-alive fault stays latched, and the service keeps running."""

from __future__ import annotations

import asyncio
import logging

import pytest

from chargepoint.app import Station
from tests.e2e.conftest import Client


async def test_a_vanished_board_is_retried_with_back_off(
    station: Station, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    board = station.sim[1].board
    assert board is not None
    board.close()  # the pty hangs up for good: the serial device is gone
    st = await client.wait_for(lambda s: s["state"] == "fault", timeout_s=5.0)
    assert "board_keepalive_lost" in {f["kind"] for f in st["faults"]}
    caplog.clear()
    await asyncio.sleep(3.0)
    attempts = [r for r in caplog.records if "reopen failed" in r.getMessage()]
    assert 1 <= len(attempts) <= 8, len(attempts)  # 0.1, 0.2, 0.4, ... s apart, not a spin
    st = await client.evse()  # the control plane answers; the fault stays
    assert st["state"] == "fault" and not st["permission"]
