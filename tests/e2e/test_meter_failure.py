"""A billing-relevant meter that stops answering stops the charge; it resumes with the meter.

``config/sim.toml`` reads its meter with the real Modbus RTU driver from a
simulated Eastron SDM630 on a pty (``meter = { backend = "sim", link = "modbus" }``):
the simulated meter is told to stay silent, the driver times out, and after
three failed reads in a row the EVSE latches a meter fault (no energy without
metering). When the meter answers again the condition goes; the fault is then
released like any other (here by the unplug).
"""

from __future__ import annotations

import pytest

from chargepoint.app import Station
from tests.e2e.conftest import Client


async def test_a_silent_meter_stops_charging_until_it_answers(
    station: Station, client: Client
) -> None:
    device = station.sim[1].modbus_meter
    assert device is not None  # the real driver talks to a simulated SDM630
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    st = await client.wait_for(lambda s: (s["meter"] or {}).get("power_w", 0) > 1000)
    device.slave.silent = True
    st = await client.wait_for(lambda s: s["state"] == "fault", timeout_s=20.0)
    assert [f["kind"] for f in st["faults"]] == ["meter"]
    assert "meter" in st["faults"][0]["detail"]
    st = await client.wait_for(lambda s: not s["permission"] and not s["contactor_closed"])
    assert st["pwm_duty_pct"] is None
    device.slave.silent = False
    await client.sim("unplug")
    st = await client.wait_for(lambda s: s["state"] == "idle", timeout_s=20.0)
    assert st["faults"] == []
    await client.sim("plug")  # metering again: charging again
    st = await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    assert st["meter"]["import_energy_wh"] == pytest.approx(device.meter.import_energy_wh, abs=0.01)
