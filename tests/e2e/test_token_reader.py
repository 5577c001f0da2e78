"""Card taps on the simulated PN532 (read by the real driver over a pty) start and stop
transactions through OCPP authorization, on the whole station with a test CSMS; and the
tap rules of chargepoint.adapters.token_auth alone (group stop C09, EV connection
timeout E03) against a recording runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chargepoint.adapters.token_auth import (
    Tap,
    TokenAuthorizer,
    decide_tap,
    group_of,
    same_token,
    stops_by_group,
)
from chargepoint.app import Station
from chargepoint.config import parse_config
from chargepoint.evse.actions import StateChanged
from chargepoint.evse.events import StartCharging, StopCharging
from chargepoint.iec61851.cp_state import CpState
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.ocpp.authorization import AuthorizationResult
from chargepoint.ocpp.station_io import IdToken, StoppedReason
from hal.sim.token_reader import TAP_S
from hal.token_reader import CardPresented
from tests.e2e.conftest import Client, stop_station
from tests.e2e.test_ocpp_station import csms_config
from tests.ocpp.csms import Csms

CARD = "04A2B3C4"
OTHER_CARD = "04112233445566"


@pytest.fixture
async def station(tmp_path: Path, csms: Csms) -> AsyncIterator[Station]:
    """config/sim.toml (with its simulated reader), no free vend, a CSMS."""
    text = csms_config(tmp_path, csms.port).replace("autostart = true", "autostart = false")
    st = Station(parse_config(text, "test"))
    task = asyncio.create_task(st.run())
    await asyncio.wait_for(st.ready.wait(), 15)
    await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 10)
    yield st
    await stop_station(st, task)


def tx_events(csms: Csms) -> list[dict[str, Any]]:
    return [frame[3] for frame in csms.received("TransactionEvent")]


def authorizes(csms: Csms) -> list[dict[str, Any]]:
    return [frame[3]["idToken"] for frame in csms.received("Authorize")]


async def tap(client: Client, card: str) -> None:
    taps = (await client.evse())["token_reader"]["taps"]
    await client("tap", evse=1, token=card)
    await client.wait_for(lambda s: s["token_reader"]["taps"] > taps)  # the driver read it
    await asyncio.sleep(TAP_S)  # the hand moves away: the next tap is a new presentation


async def test_tc_e_04_and_tc_e_15_tap_first_then_plug_then_stop_by_the_same_card(
    station: Station, csms: Csms
) -> None:
    """TC_E_04 (authorization first) then TC_E_15 (StopAuthorized, Local):

    1. present the card: AuthorizeRequest with the UID as an ISO14443 idToken;
    2. Accepted: TransactionEvent Started, triggerReason Authorized, with the idToken
       (TxStartPoint Authorized, E03);
    3. plug in: energy flows;
    4. present the same card: no second AuthorizeRequest (E07); TransactionEvent
       Ended, triggerReason StopAuthorized, stoppedReason Local; the EVSE stops.
    """
    csms.authorize_answers[CARD] = "Accepted"
    client = Client(station)
    await tap(client, CARD)
    await csms.until(lambda: authorizes(csms), within_s=10)
    assert authorizes(csms) == [{"idToken": CARD, "type": "ISO14443"}]
    await csms.until(lambda: tx_events(csms), within_s=10)
    started = tx_events(csms)[0]
    assert started["eventType"] == "Started" and started["triggerReason"] == "Authorized"
    assert started["idToken"] == {"idToken": CARD, "type": "ISO14443"}
    assert (await client.evse())["pwm_duty_pct"] is None  # no EV yet: nothing offered

    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])

    await tap(client, CARD)
    await csms.until(lambda: tx_events(csms)[-1]["eventType"] == "Ended", within_s=10)
    ended = tx_events(csms)[-1]
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert len(authorizes(csms)) == 1
    await client.wait_for(lambda s: not s["permission"] and s["pwm_duty_pct"] is None)
    events = tx_events(csms)
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1


async def test_tc_c_56_unknown_card_is_refused(station: Station, csms: Csms) -> None:
    """TC_C_56 (Authorization Unknown), EV connected first:

    1. plug in (TxStartPoint EVConnected starts the transaction, nothing offered);
    2. present a card the CSMS answers Unknown: AuthorizeRequest;
    3. no TransactionEvent with that idToken follows, no energy is offered.
    """
    csms.authorize_answers[OTHER_CARD] = "Unknown"
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "connected")
    await tap(client, OTHER_CARD)
    await csms.until(lambda: authorizes(csms), within_s=10)
    before = len(tx_events(csms))
    await asyncio.sleep(0.5)
    assert not any("idToken" in e for e in tx_events(csms)[before:])
    assert (await client.evse())["pwm_duty_pct"] is None


async def test_tc_c_04_a_different_card_does_not_stop_the_charge(
    station: Station, csms: Csms
) -> None:
    """TC_C_04 (Local stop, different idToken):

    1. plug in, present card A: Accepted, charging (EnergyTransferStarted);
    2. present card B (Accepted, but not of A's group): AuthorizeRequest for B;
    3. the charge goes on: no Ended, no further AuthorizeRequest.
    """
    csms.authorize_answers[CARD] = "Accepted"
    csms.authorize_answers[OTHER_CARD] = "Accepted"
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "connected")
    await tap(client, CARD)
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    await tap(client, OTHER_CARD)
    await csms.until(lambda: len(authorizes(csms)) == 2, within_s=10)
    await asyncio.sleep(0.5)
    assert (await client.evse())["state"] == "charging"
    assert all(e["eventType"] != "Ended" for e in tx_events(csms))
    assert len(authorizes(csms)) == 2


async def test_offline_card_on_the_local_list_starts_a_transaction(
    station: Station, csms: Csms
) -> None:
    """Offline authorization by the local list (C13, D01; as TC_E_04 offline):

    1. SendLocalList (Full) with card B Accepted;
    2. the CSMS goes away; present card B: accepted by the local list, no Authorize;
    3. plug in: energy flows;
    4. the CSMS is back: the queued TransactionEvent Started carries card B and
       ``offline: true`` (E04).
    """
    client = Client(station)
    answer = await csms.raw_call(
        json.dumps(
            [
                2,
                "ll-1",
                "SendLocalList",
                {
                    "versionNumber": 1,
                    "updateType": "Full",
                    "localAuthorizationList": [
                        {
                            "idToken": {"idToken": OTHER_CARD, "type": "ISO14443"},
                            "idTokenInfo": {"status": "Accepted"},
                        }
                    ],
                },
            ]
        ),
        "ll-1",
    )
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
    await csms.stop()
    await asyncio.sleep(0.5)  # the station sees the connection go
    await tap(client, OTHER_CARD)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    await csms.start()
    await csms.until(lambda: tx_events(csms), within_s=20)
    started = tx_events(csms)[0]
    assert started["eventType"] == "Started" and started["offline"] is True
    assert started["idToken"] == {"idToken": OTHER_CARD, "type": "ISO14443"}
    assert authorizes(csms) == []


async def test_cli_sim_tap_reaches_the_reader(station: Station, csms: Csms, tmp_path: Path) -> None:
    """``chargepoint sim tap UID``: the CLI's request becomes a card on the reader."""
    from chargepoint.cli import main  # noqa: PLC0415

    config = tmp_path / "station.toml"
    config.write_text(csms_config(tmp_path, csms.port))
    argv = ["sim", "tap", CARD, "--config", str(config), "--socket", str(station.control_socket)]
    assert await asyncio.to_thread(main, argv) == 0
    await csms.until(lambda: authorizes(csms), within_s=10)
    assert authorizes(csms) == [{"idToken": CARD, "type": "ISO14443"}]


async def test_tap_needs_a_card_uid(station: Station) -> None:
    client = Client(station)
    from chargepoint.adapters.control_socket import request  # noqa: PLC0415

    answer = await request(station.control_socket, {"cmd": "tap", "evse": 1, "token": "xyz"})
    assert not answer["ok"] and "UID" in answer["error"]
    assert (await client.evse())["token_reader"]["taps"] == 0


# ------------------------------------------------------------------ the rules alone
A = IdToken("04A2B3C4")
B = IdToken("04112233445566")
GROUP = {"idToken": "FAMILY-1", "type": "Central"}


def accepted(group: dict[str, str] | None = None) -> AuthorizationResult:
    info: dict[str, Any] = {"status": "Accepted"}
    if group is not None:
        info["groupIdToken"] = group
    return AuthorizationResult("Accepted", "CSMS", info)


def test_the_starting_card_stops_without_asking() -> None:
    assert decide_tap(None, A) is Tap.AUTHORIZE
    assert decide_tap(A, IdToken("04a2b3c4", "iso14443")) is Tap.STOP  # case-insensitive
    assert decide_tap(A, B) is Tap.ASK_GROUP
    assert not same_token(A, IdToken(A.id_token, "ISO15693"))


def test_a_card_of_the_same_group_stops_another_does_not() -> None:
    group = group_of(accepted(GROUP))
    assert group == IdToken("FAMILY-1", "Central")
    assert stops_by_group(group, accepted({"idToken": "family-1", "type": "Central"}))
    assert not stops_by_group(group, accepted({"idToken": "OTHER", "type": "Central"}))
    assert not stops_by_group(group, accepted())  # no group: refused (TC_C_04)
    assert not stops_by_group(None, accepted(GROUP))  # the starting card had none
    assert not stops_by_group(
        group, AuthorizationResult("Blocked", "CSMS", {"status": "Blocked", "groupIdToken": GROUP})
    )


@dataclass
class _Controller:
    state: EvseState = EvseState.IDLE


@dataclass
class _Runner:
    evse_id: int = 1
    controller: _Controller = field(default_factory=_Controller)
    events: list[object] = field(default_factory=list)

    async def submit(self, event: object) -> list[object]:
        self.events.append(event)
        return []


class _Sink:
    """What the OCPP bridge does for the reader: it holds the authorised token until
    it ends (or the CSMS deauthorizes it) and knows TxCtrlr.EVConnectionTimeOut."""

    def __init__(self, timeout_s: float | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.token: IdToken | None = None
        self.timeout_s = timeout_s

    def active_token(self, evse_id: int) -> IdToken | None:
        return self.token

    def token_authorized(self, evse_id: int, token: IdToken) -> None:
        self.calls.append(("authorized", token))
        self.token = token

    def token_ended(self, evse_id: int, reason: StoppedReason) -> None:
        self.calls.append(("ended", reason))
        self.token = None

    def ev_connection_timeout_s(self, evse_id: int) -> float | None:
        return self.timeout_s


class _Reader:
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read_card(self) -> CardPresented:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def _authorizer(
    answers: dict[str, AuthorizationResult],
    timeout_s: float = 60.0,
    sink: _Sink | None = None,
) -> tuple[TokenAuthorizer, _Runner, _Sink]:
    runner, sink = _Runner(), sink or _Sink()

    async def authorize(token: IdToken) -> AuthorizationResult:
        return answers[token.id_token]

    auth = TokenAuthorizer(
        runner,  # type: ignore[arg-type]
        _Reader(),
        authorize,
        sink=sink,
        ev_connection_timeout_s=timeout_s,
    )
    return auth, runner, sink


async def test_c09_group_card_stops_the_charge() -> None:
    auth, runner, sink = _authorizer({A.id_token: accepted(GROUP), B.id_token: accepted(GROUP)})
    runner.controller.state = EvseState.CONNECTED
    await auth.tap(A)
    assert runner.events == [StartCharging("token")]
    await auth.tap(B)
    assert runner.events[-1] == StopCharging("token")
    assert sink.calls == [("authorized", A), ("ended", StoppedReason.LOCAL)]


async def test_e03_no_ev_in_time_lapses_the_authorisation() -> None:
    auth, runner, sink = _authorizer({A.id_token: accepted()}, timeout_s=0.05)
    task = asyncio.create_task(auth.run())
    try:
        await auth.tap(A)
        for _ in range(100):
            if ("ended", StoppedReason.TIMEOUT) in sink.calls:
                break
            await asyncio.sleep(0.01)
        assert sink.calls == [("authorized", A), ("ended", StoppedReason.TIMEOUT)]
        assert runner.events == []  # the EVSE was never told to offer energy
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_e03_the_ev_plugged_in_time_gets_energy() -> None:
    auth, runner, _sink = _authorizer({A.id_token: accepted()})
    task = asyncio.create_task(auth.run())
    try:
        await auth.tap(A)
        runner.controller.state = EvseState.CONNECTED
        auth.listener(1, StateChanged(EvseState.IDLE, EvseState.CONNECTED, CpState.B))
        for _ in range(100):
            if runner.events:
                break
            await asyncio.sleep(0.01)
        assert runner.events == [StartCharging("token")]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 1 s")


async def test_e03_the_timeout_is_the_csms_ev_connection_timeout() -> None:
    """TxCtrlr.EVConnectionTimeOut from the OCPP device model (via the sink) wins over
    the default; 0 means the authorisation waits for an EV without limit."""
    auth, _runner, sink = _authorizer({A.id_token: accepted()}, 60.0, _Sink(timeout_s=0.05))
    task = asyncio.create_task(auth.run())
    try:
        await auth.tap(A)
        await _until(lambda: ("ended", StoppedReason.TIMEOUT) in sink.calls)
        sink.timeout_s = 0  # no limit
        await auth.tap(A)
        await asyncio.sleep(0.2)
        assert sink.calls[-1] == ("authorized", A)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_e05_a_deauthorized_card_gets_no_energy_and_starts_afresh() -> None:
    """E05: the CSMS refused the card's transaction (Deauthorize: the bridge no longer
    holds the token) while no EV was plugged in: a plug-in gets no energy, and the
    next tap of that card authorises again instead of stopping."""
    auth, runner, sink = _authorizer({A.id_token: accepted()})
    task = asyncio.create_task(auth.run())
    try:
        await auth.tap(A)
        sink.token = None  # what OcppBridge does on Deauthorize
        runner.controller.state = EvseState.CONNECTED
        auth.listener(1, StateChanged(EvseState.IDLE, EvseState.CONNECTED, CpState.B))
        await asyncio.sleep(0.1)
        assert runner.events == []
        await auth.tap(A)
        assert sink.calls == [("authorized", A), ("authorized", A)]
        assert runner.events == [StartCharging("token")]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
