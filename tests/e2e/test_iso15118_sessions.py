"""ISO 15118-20 sessions end to end: the whole service with our simulated car.

Everything runs as in ``chargepoint demo``: the pilot board on a pty, the power
module on a CAN virtual bus, the car (our own EVCC) found by SDP on ``::1`` and
talking mutual TLS 1.3 with the test PKI. The tests drive the service through
its control socket only and read the simulated devices on the far side.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from chargepoint.adapters.iso15118_setup import car_tls
from chargepoint.adapters.v2g_pki import load_test_pki
from tests.e2e.iso15118_support import (
    Mode,
    Service,
    V2gClient,
    assert_safe,
    assert_summary_matches_meter,
    car,
    car_session,
    iso,
    running_station,
    v2g_config,
)

CHARGE_WH = 0.5  # energy each phase must move before the test goes on
DISCHARGE_W = -8_000.0
DC_MESSAGES = ("DC_CableCheckReq", "DC_PreChargeReq", "DC_WeldingDetectionReq")


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One test PKI for the module (the first station creates it)."""
    return tmp_path_factory.mktemp("v2g") / "pki"


def after(messages: list[str], name: str) -> list[str]:
    """The messages after the last ``name`` (requests and responses, in order)."""
    last = len(messages) - 1 - messages[::-1].index(name)
    return messages[last + 1 :]


def power_w(client: V2gClient, service: str) -> float:
    """Power at the EVSE output as the simulated plant carries it (+ to the car)."""
    plant = client.hw.world.plant
    return plant.dc_power_w if service.startswith("DC") else plant.ac_power_w


async def discharge_phase(client: V2gClient, service: str, mode: str) -> None:
    """BPT: energy from the car. Dynamic: the operator asks (and the session is stopped
    while discharging); Scheduled: the car discharges, then charges again."""
    if mode == "dynamic":
        await client.sim("setpoint", str(DISCHARGE_W))
    await client.exported_more(CHARGE_WH)
    if mode == "dynamic":  # the EVSE settles at the operator's set-point
        await client.until_device(
            "discharge at the set-point",
            lambda: abs(power_w(client, service) - DISCHARGE_W) < 0.05 * abs(DISCHARGE_W),
        )
    st = await client.evse()
    if service == "DC_BPT":
        assert iso(st)["evse_current_a"] < -1.0  # the power stage imports
    else:
        assert client.hw.world.plant.ac_current_a < -1.0  # the on-board charger feeds back
    if mode == "dynamic":
        assert iso(st)["target_power_w"] < 0.0
        assert iso(st)["setpoint_w"] == DISCHARGE_W
    else:
        assert car_session(st)["schedule_tuple_id"] == 2  # the tuple with discharging
        await client.sim("discharge", "off")


@pytest.mark.parametrize(
    ("service", "mode"),
    [
        ("DC", "dynamic"),
        ("DC_BPT", "scheduled"),
        ("DC_BPT", "dynamic"),
        ("AC_BPT", "dynamic"),
        ("AC_BPT", "scheduled"),
    ],
)
async def test_complete_session_over_tls(
    tmp_path: Path,
    pki_dir: Path,
    caplog: pytest.LogCaptureFixture,
    service: Service,
    mode: Mode,
) -> None:
    caplog.set_level(logging.INFO)
    bpt = service.endswith("BPT")
    config = v2g_config(tmp_path / "state", pki_dir, service=service, control_mode=mode)
    async with running_station(config) as client:
        if bpt:
            await client.sim("discharge", "on")  # the driver allows V2G
        st = await client.plug_until_charge_loop()
        assert iso(st)["tls"] is True and iso(st)["service"] == service
        assert iso(st)["control_mode"] == mode
        if mode == "scheduled" and bpt:
            await discharge_phase(client, service, mode)  # the car starts discharging
            await client.imported_more(CHARGE_WH)
        else:
            await client.imported_more(CHARGE_WH)
            if bpt:
                await discharge_phase(client, service, mode)
            else:
                await assert_no_discharge_without_bpt(client)
        await client.sim("stop")  # the driver ends the session (Dynamic BPT: discharging)
        st = await client.until_session_over()
        report = st["car_report"]
        assert report["ok"] and report["end_reason"] == "stopped", report["error"]
        assert report["service"] == service and report["control_mode"] == mode
        secc_session_id = client.station.v2g[1].session.session_id
        assert secc_session_id is not None and report["session_id"] == secc_session_id.hex().upper()
        assert iso(st)["last_end"] == "terminated by the EV" and iso(st)["sessions"] == 1
        tail = after(
            report["messages"], "DC_ChargeLoopRes" if "DC" in service else "AC_ChargeLoopRes"
        )
        if "DC" in service:
            assert all(name in report["messages"] for name in DC_MESSAGES)
            assert tail[:3] == ["PowerDeliveryReq", "PowerDeliveryRes", "DC_WeldingDetectionReq"]
        else:
            assert tail[:2] == ["PowerDeliveryReq", "PowerDeliveryRes"]
        assert tail[-2:] == ["SessionStopReq", "SessionStopRes"]
        st = await client.until("contactors open", lambda s: s["contactor_closed"] is False)
        assert_safe(client, st)
        assert report["energy_charged_wh"] > 0.0  # the car's own battery measurement
        assert (report["energy_discharged_wh"] > 0.0) is bpt
        st = await client.unplug_until_summary()
        assert_summary_matches_meter(st)
        summary = st["last_session"]
        assert summary["energy_imported_wh"] >= CHARGE_WH
        if bpt:
            assert summary["energy_exported_wh"] >= CHARGE_WH
        else:
            assert summary["energy_exported_wh"] == 0.0
    # a clean session: the car never had to give up on a wind-down or a check
    problems = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and r.name.startswith(("hal.sim.evcc", "chargepoint.iso15118"))
    ]
    assert problems == []


async def assert_no_discharge_without_bpt(client: V2gClient) -> None:
    """Plain DC: an operator discharge set-point must not make energy flow back."""
    await client.sim("setpoint", str(DISCHARGE_W))
    loops = car(await client.evse())["loops"]
    st = await client.until("five more charge loops", lambda s: car(s)["loops"] >= loops + 5)
    assert iso(st)["evse_current_a"] >= 0.0
    assert client.registers()[1] == 0.0
    await client.sim("setpoint", "off")


async def test_pause_then_resume_joins_the_same_session(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = v2g_config(tmp_path / "state", pki_dir)
    async with running_station(config) as client:
        st = await client.plug_until_charge_loop()
        session_id = car_session(st)["session_id"]
        await client.imported_more(CHARGE_WH)
        await client.sim("pause")
        # the car may see SessionStopRes before the server has recorded the end
        st = await client.until(
            "the pause", lambda s: car(s)["state"] == "paused" and iso(s)["last_end"] != ""
        )
        assert iso(st)["last_end"] == "paused by the EV"
        st = await client.until("contactors open", lambda s: s["contactor_closed"] is False)
        assert_safe(client, st)
        await client.sim("resume")
        st = await client.until(
            "the charge loop again",
            lambda s: iso(s).get("state") == "charge_loop" and car(s)["sessions"] == 2,
        )
        assert car_session(st)["session_id"] == session_id  # [V2G20-1032]: OK_OldSessionJoined
        secc_session_id = client.station.v2g[1].session.session_id
        assert secc_session_id is not None and secc_session_id.hex().upper() == session_id
        await client.imported_more(CHARGE_WH, "energy after the resume")
        await client.sim("stop")
        st = await client.until_session_over()
        report = st["car_report"]
        assert report["ok"] and report["end_reason"] == "stopped" and report["sessions"] == 2
        assert report["session_id"] == session_id
        # [V2G20-2098]: the joined session goes on at ChargeParameterDiscovery
        assert after(report["messages"], "SessionSetupRes")[0] == "DC_ChargeParameterDiscoveryReq"
        st = await client.until("the SECC's end of it", lambda s: iso(s)["sessions"] == 2)
        assert iso(st)["last_end"] == "terminated by the EV"
    assert f"EVCC: paused session {session_id} joined again" in caplog.messages


async def test_plain_tcp_lab_mode_works_and_warns(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = v2g_config(tmp_path / "state", pki_dir, tls=False)
    async with running_station(config) as client:
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "chargepoint.adapters.iso15118_setup"
        ]
        assert any("tls = 'off'" in w and "plain TCP" in w for w in warnings), warnings
        st = await client.plug_until_charge_loop()
        assert iso(st)["tls"] is False
        await client.imported_more(CHARGE_WH)
        await client.sim("stop")
        st = await client.until_session_over()
        assert st["car_report"]["ok"] and iso(st)["last_end"] == "terminated by the EV"
    assert any("plain TCP, lab mode" in m for m in caplog.messages)


async def test_second_connection_is_refused_without_disturbing_the_session(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = v2g_config(tmp_path / "state", pki_dir)
    async with running_station(config) as client:
        st = await client.plug_until_charge_loop()
        session_id = car_session(st)["session_id"]
        port = iso(st)["port"]
        context = car_tls(load_test_pki(pki_dir))
        assert context is not None
        # a second EVCC with a valid certificate: TLS is fine, the SECC closes at once
        reader, writer = await asyncio.open_connection(
            "::1", port, ssl=context, server_hostname="::1"
        )
        try:
            data = await asyncio.wait_for(reader.read(100), 2.0)
        except (ConnectionError, ssl.SSLError):
            data = b""
        writer.close()
        assert data == b""
        assert any("refusing" in m and "a session is running" in m for m in caplog.messages)
        loops = car(await client.evse())["loops"]
        st = await client.until("more charge loops", lambda s: car(s)["loops"] >= loops + 5)
        assert iso(st)["state"] == "charge_loop" and car_session(st)["session_id"] == session_id
        await client.imported_more(CHARGE_WH)
        await client.sim("stop")
        st = await client.until_session_over()
        report: dict[str, Any] = st["car_report"]
        assert report["ok"] and report["sessions"] == 1 and report["session_id"] == session_id
        assert iso(st)["sessions"] == 1 and iso(st)["last_end"] == "terminated by the EV"
