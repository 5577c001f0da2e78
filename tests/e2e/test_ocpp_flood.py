"""A flooding CSMS cannot starve the safety loop (issue 10 item 5).

While a session charges, the CSMS fires thousands of CALLs at once, valid and
invalid. The OCPP side handles one frame at a time and yields in between, and
reads at most a small window ahead (back-pressure on the WebSocket); the
safety loop keeps its cadence, the board's keep-alive never gaps, no fault is
raised and the session goes on. Every CALL still gets its answer.
"""

from __future__ import annotations

import asyncio
import json

from chargepoint.app import Station
from tests.e2e.conftest import Client
from tests.e2e.test_ocpp_station import station  # noqa: F401 - the fixture (csms: conftest)
from tests.ocpp.csms import Csms

FLOOD = 3_000


def flood_frames() -> list[tuple[str, str]]:
    frames = []
    for i in range(FLOOD):
        uid = f"flood-{i}"
        match i % 3:
            case 0:
                body = [
                    2,
                    uid,
                    "GetVariables",
                    {
                        "getVariableData": [
                            {
                                "component": {"name": "OCPPCommCtrlr"},
                                "variable": {"name": "HeartbeatInterval"},
                            }
                        ]
                    },
                ]
            case 1:
                body = [2, uid, "NoSuchAction", {}]
            case _:
                body = [2, uid, "Reset", {"type": 42}]  # schema violation
        frames.append((uid, json.dumps(body)))
    return frames


async def test_a_call_flood_does_not_starve_the_safety_loop(
    station: Station,  # noqa: F811
    csms: Csms,
) -> None:
    await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    runner = station.runners[1]
    board = station.sim[1].board
    assert board is not None and csms.ws is not None
    await asyncio.sleep(0.5)
    runner.max_safety_gap_s = 0.0
    board.max_host_gap_s = 0.0
    frames = flood_frames()
    for _uid, text in frames:
        await csms.ws.send(text)  # as fast as the socket takes them
    wanted = {uid for uid, _ in frames}

    def answered() -> bool:
        done = {
            f[1]
            for d, f in csms.frames
            if d == "in" and isinstance(f, list) and f[0] in (3, 4) and f[1] in wanted
        }
        return done == wanted

    await csms.until(answered, within_s=120)
    st = await client.evse()
    assert st["state"] == "charging" and st["faults"] == [], st["faults"]
    assert board.max_host_gap_s < 0.15, board.max_host_gap_s
    assert runner.max_safety_gap_s < 0.25, runner.max_safety_gap_s
