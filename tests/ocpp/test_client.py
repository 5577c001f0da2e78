"""The asyncio adapter against a real CSMS (the `ocpp` package's server side) on loopback."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import sqlite3
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call
from ocpp.v201.datatypes import (
    ComponentType,
    GetVariableDataType,
    SetVariableDataType,
    VariableType,
)

from chargepoint.adapters.ocpp_client import OcppClient, OcppClientSettings
from chargepoint.adapters.ocpp_store import OcppStore
from chargepoint.errors import ConfigError
from chargepoint.ocpp.device_model import AttributeType, ComponentKey, VariableKey
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station_io import (
    IdToken,
    MeterSample,
    RemoteStart,
    SessionEnded,
    SessionStarted,
    StationCommand,
    StoppedReason,
)

from .csms import Csms
from .helpers import IDENTITY, PASSWORD

IDENT = "CS 001/é"


def settings(csms: Csms, state_file: Path, **extra: Any) -> OcppClientSettings:
    return OcppClientSettings(
        csms_url=f"ws://127.0.0.1:{csms.port}/ocpp",
        identity=IDENT,
        station=IDENTITY,
        state_file=state_file,
        basic_auth_password=PASSWORD,
        **extra,
    )


@asynccontextmanager
async def running(
    cfg: OcppClientSettings, commands: asyncio.Queue[StationCommand] | None = None
) -> AsyncIterator[OcppClient]:
    client = OcppClient(cfg, commands or asyncio.Queue(), rng=random.Random(0))
    async with asyncio.TaskGroup() as group:
        group.create_task(client.run())
        try:
            yield client
        finally:
            client.stop()


def meter(import_wh: float) -> MeterSample:
    return MeterSample(
        evse_id=1,
        import_wh=import_wh,
        export_wh=0,
        power_w=7000,
        voltage_v=230,
        current_a=30,
        soc_pct=None,
    )


async def set_variables(csms: Csms, values: dict[tuple[str, str], str]) -> list[str]:
    result = await csms.cp.call(
        call.SetVariables(
            set_variable_data=[
                SetVariableDataType(
                    attribute_value=value,
                    component=ComponentType(name=component),
                    variable=VariableType(name=variable),
                )
                for (component, variable), value in values.items()
            ]
        ),
        suppress=False,
    )
    return [r["attribute_status"] for r in result.set_variable_result]


FAST_RECONNECT = {
    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"): "1",
    ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0",
}


async def test_boot_status_and_heartbeat(tmp_path: Path) -> None:
    async with (
        Csms(boot_answer=("Accepted", 1)) as csms,
        running(settings(csms, tmp_path / "s.db")),
    ):
        await csms.until(lambda: csms.received("Heartbeat"))
        actions = [f[2] for f in csms.received()]
        assert actions[:3] == ["BootNotification", "StatusNotification", "StatusNotification"]
        request = csms.requests[0]
        # identity percent-encoded as the last path segment; Basic auth user = identity
        assert request.path == "/ocpp/CS%20001%2F%C3%A9"
        expected = base64.b64encode(f"{IDENT}:{PASSWORD}".encode()).decode()
        assert request.headers["Authorization"] == f"Basic {expected}"
        assert request.headers["Sec-WebSocket-Protocol"] == "ocpp2.1, ocpp2.0.1"
        timestamp = csms.received("StatusNotification")[0][3]["timestamp"]
        assert len(timestamp) == 24 and timestamp.endswith("Z")


async def test_ocpp21_is_negotiated_when_offered_first_and_supported(tmp_path: Path) -> None:
    async with (
        Csms(subprotocols=("ocpp2.1",)) as csms,
        running(settings(csms, tmp_path / "s.db")) as client,
    ):
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        assert client.station is not None
        assert client.station.version is ProtocolVersion.V21


def preset(state_file: Path, values: dict[tuple[str, str], str]) -> None:
    """Values a CSMS set earlier, as the store would hold them."""
    with OcppStore(state_file) as store:
        for (component, variable), value in values.items():
            store.save_variable(
                (ComponentKey(component), VariableKey(variable), AttributeType.ACTUAL), value
            )


async def test_no_subprotocol_selected_closes_without_guessing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "chargepoint.adapters.ocpp_client")
    preset(tmp_path / "s.db", FAST_RECONNECT)
    async with Csms(subprotocols=None) as csms, running(settings(csms, tmp_path / "s.db")):
        await csms.until(lambda: len(csms.requests) == 2)  # closed, backed off, retried
        assert "CSMS selected no OCPP subprotocol" in caplog.text
        assert csms.received() == []


async def test_pending_then_accepted(tmp_path: Path) -> None:
    async with Csms(boot_answer=("Pending", 1)) as csms, running(settings(csms, tmp_path / "s.db")):
        await csms.until(lambda: csms.boots == 1 and csms.cp is not None)
        # B02: the CSMS may configure the station while Pending
        assert await set_variables(csms, {("OCPPCommCtrlr", "OfflineThreshold"): "90"}) == [
            "Accepted"
        ]
        assert [f[2] for f in csms.received()] == ["BootNotification"]
        csms.boot_answer = ("Accepted", 300)
        await csms.until(lambda: csms.received("StatusNotification"))
        assert [f[2] for f in csms.received()][:2] == ["BootNotification", "BootNotification"]


async def test_get_set_variables_and_base_report(tmp_path: Path) -> None:
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db")):
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        assert await set_variables(
            csms,
            {("OCPPCommCtrlr", "HeartbeatInterval"): "120", ("SecurityCtrlr", "Identity"): "x"},
        ) == ["Accepted", "Rejected"]
        result = await csms.cp.call(
            call.GetVariables(
                get_variable_data=[
                    GetVariableDataType(
                        component=ComponentType(name="OCPPCommCtrlr"),
                        variable=VariableType(name="HeartbeatInterval"),
                    ),
                    GetVariableDataType(
                        component=ComponentType(name="Bogus"),
                        variable=VariableType(name="HeartbeatInterval"),
                    ),
                ]
            ),
            suppress=False,
        )
        assert [
            (r["attribute_status"], r.get("attribute_value")) for r in result.get_variable_result
        ] == [("Accepted", "120"), ("UnknownComponent", None)]
        report = await csms.cp.call(
            call.GetBaseReport(request_id=5, report_base="FullInventory"), suppress=False
        )
        assert report.status == "Accepted"
        await csms.until(
            lambda: (
                csms.received("NotifyReport") and not csms.received("NotifyReport")[-1][3]["tbc"]
            )
        )
        parts = csms.received("NotifyReport")
        assert [p[3]["seqNo"] for p in parts] == list(range(len(parts)))
        names = {d["component"]["name"] for p in parts for d in p[3]["reportData"]}
        assert {"OCPPCommCtrlr", "TxCtrlr", "SecurityCtrlr", "V2XChargingCtrlr"} <= names


async def test_every_incoming_call_is_answered_and_the_station_keeps_running(
    tmp_path: Path,
) -> None:
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db")):
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        answer = await csms.raw_call('[2,"u1","PublishFirmware",{}]', "u1")
        assert answer[:3] == [4, "u1", "NotSupported"]
        answer = await csms.raw_call('[2,"u2","MakeCoffee",{}]', "u2")
        assert answer[:3] == [4, "u2", "NotImplemented"]
        answer = await csms.raw_call('[2,"u3","GetVariables",{"getVariableData":"x"}]', "u3")
        assert answer[:3] == [4, "u3", "TypeConstraintViolation"]
        answer = await csms.raw_call('[2,"u4","GetVariables",[]]', "u4")
        assert answer[:3] == [4, "u4", "FormatViolation"]
        answer = await csms.raw_call("[2, not json", "-1")
        assert answer[:3] == [4, "-1", "RpcFrameworkError"]
        answer = await csms.raw_call('[2,"u5","DataTransfer",{"vendorId":"acme"}]', "u5")
        assert answer == [3, "u5", {"status": "UnknownVendorId"}]
        # still alive and well
        result = await csms.cp.call(call.ClearCache(), suppress=False)
        assert result.status == "Accepted"  # C11: the authorization cache is enabled


async def test_trigger_message_answered_before_the_triggered_message(tmp_path: Path) -> None:
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db")):
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        result = await csms.cp.call(
            call.TriggerMessage(requested_message="Heartbeat"), suppress=False
        )
        assert result.status == "Accepted"
        await csms.until(lambda: csms.received("Heartbeat"))
        answer_at = next(i for i, (d, f) in enumerate(csms.frames) if d == "in" and f[0] == 3)
        heartbeat_at = next(
            i
            for i, (d, f) in enumerate(csms.frames)
            if d == "in" and f[0] == 2 and f[2] == "Heartbeat"
        )
        assert answer_at < heartbeat_at


async def test_remote_start_reaches_the_runtime(tmp_path: Path) -> None:
    commands: asyncio.Queue[StationCommand] = asyncio.Queue()
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db"), commands):
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        result = await csms.cp.call(
            call.RequestStartTransaction(
                id_token={"id_token": "TAG1", "type": "ISO14443"}, remote_start_id=4, evse_id=1
            ),
            suppress=False,
        )
        assert result.status == "Accepted"
        assert await asyncio.wait_for(commands.get(), 2) == RemoteStart(
            1, IdToken("TAG1", "ISO14443"), 4
        )


async def test_reconnect_after_restart_and_queue_delivered_in_order(tmp_path: Path) -> None:
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db")) as client:
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        assert await set_variables(csms, FAST_RECONNECT) == ["Accepted", "Accepted"]
        await csms.stop()
        client.submit(SessionStarted(1, 1, IdToken("TAG1"), meter(100)))
        client.submit(meter(150))
        client.submit(SessionEnded(1, StoppedReason.LOCAL, meter(200)))
        await asyncio.sleep(0.2)
        csms.frames.clear()
        await csms.start()
        await csms.until(lambda: len(csms.received("TransactionEvent")) == 2, within_s=8)
        events = [f[3] for f in csms.received("TransactionEvent")]
        assert [(e["eventType"], e["seqNo"], e.get("offline")) for e in events] == [
            ("Started", 0, True),
            ("Ended", 1, True),
        ]
        assert csms.boots == 1  # no second BootNotification after a reconnect


async def test_failed_transaction_event_is_retried(tmp_path: Path) -> None:
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db")) as client:
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        assert await set_variables(csms, {("OCPPCommCtrlr", "MessageAttemptInterval"): "1"}) == [
            "UnknownVariable"
        ]
        result = await csms.cp.call(
            call.SetVariables(
                set_variable_data=[
                    SetVariableDataType(
                        attribute_value="1",
                        component=ComponentType(name="OCPPCommCtrlr"),
                        variable=VariableType(
                            name="MessageAttemptInterval", instance="TransactionEvent"
                        ),
                    )
                ]
            ),
            suppress=False,
        )
        assert result.set_variable_result[0]["attribute_status"] == "Accepted"
        csms.fail_transaction_events = True
        client.submit(SessionStarted(1, 1, None, meter(100)))
        await csms.until(lambda: any(d == "out" and f[0] == 4 for d, f in csms.frames))
        csms.fail_transaction_events = False
        await csms.until(lambda: len(csms.received("TransactionEvent")) == 2, within_s=3)
        first, second = csms.received("TransactionEvent")
        assert first[3] == second[3] and first[1] != second[1]


def _wait_for_queued(state_file: Path, count: Callable[[int], bool], within_s: float) -> None:
    """Poll the state file from outside the process under test (run in a thread)."""
    end = time.monotonic() + within_s
    while not count(_queued(state_file)):
        assert time.monotonic() < end, "the queue never reached the expected size"
        time.sleep(0.02)


def _queued(state_file: Path) -> int:
    """Rows in the queue table, read by an independent reader (0 before it exists)."""
    if not state_file.exists():
        return 0
    db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM queue").fetchone()[0])
    except sqlite3.OperationalError:  # schema not created yet
        return 0
    finally:
        db.close()


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from chargepoint.adapters.ocpp_client import OcppClient, OcppClientSettings
    from chargepoint.ocpp.station_io import IdToken, MeterSample, SessionStarted
    from tests.ocpp.helpers import IDENTITY

    async def main():
        cfg = OcppClientSettings(csms_url="ws://127.0.0.1:9/ocpp", identity="CS-KILL",
                                 station=IDENTITY, state_file=Path(sys.argv[1]))
        client = OcppClient(cfg, asyncio.Queue())
        client.submit(SessionStarted(1, 1, IdToken("TAG9"),
                                     MeterSample(1, 10.0, 0.0, 0.0, 230.0, 0.0)))
        await client.run()

    asyncio.run(main())
""")


async def test_queued_event_survives_kill_9(tmp_path: Path) -> None:
    state_file = tmp_path / "s.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(state_file), cwd=Path(__file__).parents[2]
    )
    try:
        await asyncio.to_thread(_wait_for_queued, state_file, lambda n: n > 0, 20)
    finally:
        child.kill()  # SIGKILL: no clean shutdown
        await child.wait()
    async with Csms() as csms, running(settings(csms, state_file)):
        await csms.until(lambda: csms.received("TransactionEvent"))
        event = csms.received("TransactionEvent")[0][3]
        assert (event["eventType"], event["seqNo"], event["offline"]) == ("Started", 0, True)
        assert event["idToken"]["idToken"] == "TAG9"
        await asyncio.to_thread(_wait_for_queued, state_file, lambda n: n == 0, 5)


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        OcppClientSettings(
            csms_url="http://x",
            identity="a:b",
            station=IDENTITY,
            state_file=tmp_path / "s.db",
            subprotocols=(),
            security_profile=4,
        )
    assert [p for p, _ in info.value.problems] == [
        "identity",
        "csms_url",
        "subprotocols",
        "security_profile",
    ]


async def test_a_new_password_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "chargepoint")
    secret = "a-brand-new-secret-42"
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db")):
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        assert await set_variables(csms, {("SecurityCtrlr", "BasicAuthPassword"): secret}) == [
            "Accepted"
        ]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("chargepoint")]
    assert any("SetVariables" in m for m in ours)
    assert not any(secret in m for m in ours)


async def test_new_password_is_used_on_the_next_connection(tmp_path: Path) -> None:
    new = "fedcba9876543210fedcba"
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db")):
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        assert await set_variables(csms, {("SecurityCtrlr", "BasicAuthPassword"): new}) == [
            "Accepted"
        ]
        await csms.until(lambda: len(csms.requests) == 2)
        expected = base64.b64encode(f"{IDENT}:{new}".encode()).decode()
        assert csms.requests[1].headers["Authorization"] == f"Basic {expected}"
        assert csms.boots == 1


def test_profile_and_scheme_must_match(tmp_path: Path) -> None:
    for profile, url in ((1, "wss://h/ocpp"), (2, "ws://h/ocpp")):
        with pytest.raises(ConfigError):
            OcppClientSettings(
                csms_url=url,
                identity="CS",
                station=IDENTITY,
                state_file=tmp_path / "s.db",
                security_profile=profile,
            )


def test_the_state_file_with_its_secrets_is_private(tmp_path: Path) -> None:
    """Issue 10 item 9: the CSMS may set the basic-auth password; it is stored 0600."""
    state_file = tmp_path / "ocpp.sqlite3"
    old = os.umask(0o022)
    try:
        preset(state_file, {("SecurityCtrlr", "BasicAuthPassword"): "s3cret-password-0123"})
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():  # the database and any -wal / -shm beside it
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
