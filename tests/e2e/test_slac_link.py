"""The PLC link in the running service: CP B -> SLAC -> link ready -> -20 session -> unplug.

The whole service runs as ``chargepoint demo`` runs it (``config/sim-v2g.toml``
has ``plc = { backend = "sim" }``): the real PLC driver talks over a frame
pipe to a simulated modem, power line and car SLAC stack; once the car's modem
has joined our logical network, SDP answers and the V2G server accepts the
car. The tests drive the service through its control socket and read the
simulated modem and car on the far side of the frame pipe.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import pytest

from chargepoint.adapters.control_socket import request
from chargepoint.adapters.iso15118_setup import car_tls
from chargepoint.adapters.v2g_pki import load_test_pki
from chargepoint.iso15118.sdp import Security
from hal.plc.simulated import SimulatedPlcLine
from hal.sim.evcc.sdp_client import discover
from tests.e2e.iso15118_support import (
    V2gClient,
    assert_safe,
    car,
    iso,
    link_ready,
    running_station,
    slac,
    v2g_config,
)

CAR_MAC = "02:00:5a:fe:c0:01"  # hal.plc.simulated.CarBehaviour's default
CHARGE_WH = 0.3


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slac") / "pki"


def line_of(client: V2gClient) -> SimulatedPlcLine:
    line = client.hw.plc_line
    assert line is not None
    return line


async def test_plug_slac_link_ready_session_unplug_leaves_the_link(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as client:
        line = line_of(client)
        st = await client.evse()
        assert slac(st)["state"] == "idle" and not link_ready(st)
        st = await client.plug_until_link()
        link = slac(st)
        assert link["ev_mac"] == CAR_MAC
        assert 0.0 < link["match_time_s"] < 5.0  # the protocol's own timers dominate
        assert link["num_sounds"] == 10
        assert abs(link["attenuation_db"] - line.channel.attenuation_db) < 10.0
        nmk = line.modem.nmk
        assert nmk is not None and line.car.joined_nmk == nmk  # the car is in our AVLN
        assert line.modem.nid is not None and link["nid"] == line.modem.nid.hex()
        # the -20 session runs over the link and moves energy
        st = await client.until("the charge loop", lambda s: iso(s).get("state") == "charge_loop")
        await client.imported_more(CHARGE_WH)
        ready_at = next(i for i, m in enumerate(caplog.messages) if "PLC link ready" in m)
        connected_at = next(i for i, m in enumerate(caplog.messages) if "connection from" in m)
        assert ready_at < connected_at  # IPv6 traffic only after D-LINK_READY
        await client.sim("stop")
        await client.until_session_over()
        st = await client.unplug_until_summary()
        assert_safe(client, st)
        st = await client.until("the link left", lambda s: slac(s)["state"] == "idle")
        assert not link_ready(st)
        # leaving the logical network: the modem has a fresh key the car never had
        await client.until_device("a fresh key", lambda: line.modem.nmk != nmk)
        # the car's modem leaves on its own poll of the line: wait for it, then check
        await client.until_device("the car out", lambda: line.car.joined_nmk is None)
        assert line.car.joined_nmk is None
        assert slac(st)["matches"] == 1 and slac(st)["dropped"] == 0

        # the next car: a new match, a new key
        st = await client.plug_until_link()
        assert slac(st)["matches"] == 2 and line.modem.nmk not in (None, nmk)
        await client.until("the charge loop", lambda s: iso(s).get("state") == "charge_loop")
        await client.sim("stop")
        await client.until_session_over()
        await client.unplug_until_summary()


async def test_without_a_link_sdp_is_silent_and_the_v2g_server_refuses(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as client:
        await client.sim("slac", "fail", "after_parm")  # the car's SLAC never sounds
        await client.sim("plug")
        st = await client.until("a dropped attempt", lambda s: slac(s)["attempts_dropped"] >= 1)
        assert not link_ready(st) and slac(st)["state"] == "waiting"
        assert "CM_START_ATTEN_CHAR.IND" in slac(st)["last_attempt"]
        # no SDP answer
        port = client.station.sdp_port
        assert port is not None
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await discover(("::1", port), security=Security.TLS, timeout_s=0.1)
        # no V2G connection (a valid TLS client is closed at once)
        context = car_tls(load_test_pki(pki_dir))
        reader, writer = await asyncio.open_connection(
            "::1", iso(st)["port"], ssl=context, server_hostname="::1"
        )
        try:
            data = await asyncio.wait_for(reader.read(100), 2.0)
        except (ConnectionError, ssl.SSLError):
            data = b""
        writer.close()
        assert data == b""
        assert any("no PLC link" in m for m in caplog.messages)
        st = await client.evse()
        assert iso(st)["state"] == "idle" and car(st).get("session") in (None, {})
        assert st["permission"] is False
        await client.sim("unplug")
        await client.until("idle", lambda s: s["state"] == "idle" and slac(s)["state"] == "idle")

        # made well again: the next plug-in matches
        await client.sim("slac", "ok")
        await client.plug_until_link()
        await client.until("the charge loop", lambda s: iso(s).get("state") == "charge_loop")
        await client.sim("stop")
        await client.until_session_over()
        await client.unplug_until_summary()


async def test_link_lost_mid_session_ends_it_safely_and_matching_restarts(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as client:
        line = line_of(client)
        await client.plug_until_link()
        await client.until("the charge loop", lambda s: iso(s).get("state") == "charge_loop")
        await client.imported_more(CHARGE_WH)
        line.car.leave()  # the car's modem drops out of our logical network
        st = await client.until(
            "the session to end",
            lambda s: "PLC link lost" in (iso(s).get("last_end") or ""),
            timeout_s=10.0,
        )
        st = await client.until(
            "power off, contactors open",
            lambda s: not s["permission"] and not s["contactor_closed"],
        )
        await client.until_device("power stage off", client.power_module_off)
        assert_safe(client, await client.evse())
        assert not link_ready(st)
        # ISO 15118-3: X1, then 5 % again; matching may start anew (the car stays plugged)
        st = await client.until(
            "5 % again and SLAC waiting",
            lambda s: s["pwm_duty_pct"] == 5.0 and slac(s)["state"] == "waiting",
            timeout_s=10.0,
        )
        assert any("PLC link left" in m for m in caplog.messages)
        await client.sim("unplug")
        await client.until("idle", lambda s: s["state"] == "idle" and slac(s)["state"] == "idle")


async def test_a_quick_replug_starts_a_new_match_and_session(tmp_path: Path, pki_dir: Path) -> None:
    """Unplug, and plug in again as soon as the EVSE has seen CP A: the simulated car's
    modem and the car poll the plug every 50 ms and may miss the unplug; they must still
    see a new plug-in (a CI failure once showed the car never starting again)."""
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as client:
        line = line_of(client)
        for n in (1, 2, 3):
            st = await client.plug_until_charge_loop()
            assert slac(st)["matches"] == n and line.car.joined_nmk is not None
            await client.sim("stop")
            await client.until_session_over()
            await client.sim("unplug")
            await client.until("idle", lambda s: s["state"] == "idle")
        await client.until("the link left", lambda s: slac(s)["state"] == "idle")


async def test_slow_car_slac_shows_in_the_match_time(tmp_path: Path, pki_dir: Path) -> None:
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as client:
        await client.sim("slac", "slow", "1.0")
        st = await client.plug_until_link()
        assert slac(st)["match_time_s"] >= 1.0
        await client.sim("unplug")
        await client.until("idle", lambda s: s["state"] == "idle" and slac(s)["state"] == "idle")


@pytest.mark.parametrize(
    "args",
    [["fail", "sometimes"], ["slow", "x"], ["slow", "61"], ["loss", "1"], ["what"], []],
)
async def test_sim_slac_rejects_bad_commands(
    tmp_path: Path, pki_dir: Path, args: list[str]
) -> None:
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as client:
        answer = await request(
            client.station.control_socket, {"cmd": "sim", "evse": 1, "name": "slac", "args": args}
        )
        assert answer["ok"] is False and "slac" in answer["error"]
