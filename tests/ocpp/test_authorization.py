"""Authorize, the authorization cache, the local list and the offline policy (C, D, F02)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from chargepoint.adapters.ocpp_client import OcppClientSettings
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.authorization import AuthorizationResult
from chargepoint.ocpp.station import AuthorizationDone
from chargepoint.ocpp.station_io import IdToken, RemoteStart, StationCommand

from .csms import Csms
from .helpers import FakeStore, Harness, calls
from .test_client import FAST_RECONNECT, meter, preset, running, set_variables, settings
from .test_station import start_session

TAG = IdToken("04A2B3C4", "ISO14443")
OTHER = IdToken("DEADBEEF", "ISO14443")


class AuthHarness(Harness):
    """Collects AuthorizationDone actions as well."""

    def __init__(self, store: FakeStore | None = None, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.results: dict[int, AuthorizationResult] = {}

    def drain(self) -> list[Any]:
        frames = super().drain()
        for action in list(self.other):
            if isinstance(action, AuthorizationDone):
                self.results[action.ref] = action.result
                self.other.remove(action)
        return frames

    def authorize(self, token: IdToken) -> tuple[int, list[Any]]:
        ref = self.station.authorize(self.now, token)
        return ref, self.drain()


def accepted_info(**extra: Any) -> dict[str, Any]:
    return {"idTokenInfo": {"status": "Accepted", **extra}}


def online() -> AuthHarness:
    h = AuthHarness()
    h.answer_all(h.boot())
    return h


def test_tc_c_33_authorize_response_updates_the_cache() -> None:
    """TC_C_33_CS (C10.FR.04, C12.FR.06), then offline (C12):

    1. present a token: AuthorizeRequest; 2. Accepted: the IdTokenInfo is cached
    (and persisted); offline, 3. the same token is accepted from the cache without
    a request; 4. an unknown token is refused (Unknown).
    """
    h = online()
    ref, frames = h.authorize(TAG)
    [request] = calls(frames, "Authorize")
    assert request[3] == {"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}}
    assert ref not in h.results
    h.reply(request, accepted_info())
    assert h.results[ref] == AuthorizationResult("Accepted", "CSMS", {"status": "Accepted"})
    assert h.store.state["auth_cache"]["entries"][0][0] == "ISO14443:04A2B3C4"
    # C12: offline, the cached answer decides
    h.station.connection_lost(h.now, "gone")
    ref, frames = h.authorize(TAG)
    assert frames == [] and h.results[ref].source == "Cache" and h.results[ref].accepted
    ref, _ = h.authorize(OTHER)
    assert h.results[ref] == AuthorizationResult("Unknown", "Refused")


def test_cache_entries_expire_after_lifetime_and_clear_cache_empties_it() -> None:
    h = online()
    h.receive(
        [
            2,
            "s",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": "60",
                        "component": {"name": "AuthCacheCtrlr"},
                        "variable": {"name": "LifeTime"},
                    }
                ]
            },
        ]
    )
    _, frames = h.authorize(TAG)
    h.reply(calls(frames, "Authorize")[0], accepted_info())
    h.station.connection_lost(h.now, "gone")
    h.now += 61
    ref, _ = h.authorize(TAG)
    assert h.results[ref].source == "Refused"  # C10: expired entries do not count
    # restored from the store, then cleared by the CSMS (C11)
    h2 = online()
    _, frames = h2.authorize(TAG)
    h2.reply(calls(frames, "Authorize")[0], accepted_info())
    assert h2.receive([2, "c", "ClearCache", {}])[0][2] == {"status": "Accepted"}
    assert h2.store.state["auth_cache"] == {"entries": []}


def test_no_answer_from_the_csms_falls_back_to_the_offline_policy() -> None:
    h = AuthHarness(overrides={"AuthCtrlr.OfflineTxForUnknownIdEnabled": "true"})
    h.answer_all(h.boot())
    ref, frames = h.authorize(OTHER)
    assert calls(frames, "Authorize")
    h.advance(31)  # MessageTimeout
    assert h.results[ref] == AuthorizationResult("Accepted", "OfflineUnknown")


def send_local_list(h: Harness, version: int, update: str, entries: list[Any]) -> str:
    payload = {"versionNumber": version, "updateType": update, "localAuthorizationList": entries}
    answer = h.receive([2, f"l{version}", "SendLocalList", payload])[0]
    status: str = answer[2]["status"]
    return status


def entry(token: IdToken, status: str | None = "Accepted") -> dict[str, Any]:
    out: dict[str, Any] = {"idToken": {"idToken": token.id_token, "type": token.kind}}
    if status is not None:
        out["idTokenInfo"] = {"status": status}
    return out


def test_local_list_full_and_differential_updates() -> None:
    h = online()
    version = h.receive([2, "v", "GetLocalListVersion", {}])[0][2]
    assert version == {"versionNumber": 0}
    assert send_local_list(h, 3, "Full", [entry(TAG), entry(OTHER, "Blocked")]) == "Accepted"
    assert h.receive([2, "v2", "GetLocalListVersion", {}])[0][2] == {"versionNumber": 3}
    # D01: a differential update must carry a newer version
    assert send_local_list(h, 3, "Differential", [entry(OTHER)]) == "VersionMismatch"
    assert send_local_list(h, 4, "Differential", [entry(TAG, None)]) == "Accepted"
    h.station.connection_lost(h.now, "gone")
    tag, _ = h.authorize(TAG)
    other, _ = h.authorize(OTHER)
    assert h.results[tag].source == "Refused"  # removed by the differential update
    assert (h.results[other].status, h.results[other].source) == ("Blocked", "LocalList")
    # persisted
    again = AuthHarness(h.store)
    again.station.start(again.now)
    ref, _ = again.authorize(OTHER)
    assert again.results[ref].status == "Blocked"
    assert again.model.value(dm.LOCAL_AUTH_LIST, dm.ENTRIES) == "1"


def test_local_pre_authorize_accepts_listed_tokens_without_asking() -> None:
    h = AuthHarness(overrides={"AuthCtrlr.LocalPreAuthorize": "true"})
    h.answer_all(h.boot())
    send_local_list(h, 1, "Full", [entry(TAG)])
    ref, frames = h.authorize(TAG)
    assert frames == [] and h.results[ref].source == "LocalList"
    _, frames = h.authorize(OTHER)
    assert calls(frames, "Authorize")


def test_authorize_remote_start_asks_before_the_runtime_starts() -> None:
    h = AuthHarness(overrides={"AuthCtrlr.AuthorizeRemoteStart": "true"})
    h.answer_all(h.boot())
    start = {"idToken": {"idToken": "TAG1", "type": "Central"}, "remoteStartId": 7, "evseId": 1}
    frames = h.receive([2, "r", "RequestStartTransaction", start])
    assert frames[0] == [3, "r", {"status": "Accepted"}]
    [request] = calls(frames, "Authorize")  # F02: after the answer
    assert h.commands == []
    h.reply(request, {"idTokenInfo": {"status": "Invalid"}})
    assert h.commands == []  # not authorized: not started
    frames = h.receive([2, "r2", "RequestStartTransaction", {**start, "remoteStartId": 8}])
    h.reply(calls(frames, "Authorize")[0], accepted_info())
    assert h.commands == [RemoteStart(1, IdToken("TAG1", "Central"), 8)]


def test_get_transaction_status() -> None:
    h = online()
    start_session(h)
    frames = h.drain()
    [event] = calls(frames, "TransactionEvent")
    tx_id = event[3]["transactionInfo"]["transactionId"]
    status = h.receive([2, "t", "GetTransactionStatus", {"transactionId": tx_id}])[0][2]
    assert status == {"messagesInQueue": True, "ongoingIndicator": True}
    h.reply(event, {})
    status = h.receive([2, "t2", "GetTransactionStatus", {"transactionId": tx_id}])[0][2]
    assert status == {"messagesInQueue": False, "ongoingIndicator": True}
    status = h.receive([2, "t3", "GetTransactionStatus", {"transactionId": "nope"}])[0][2]
    assert status == {"messagesInQueue": False, "ongoingIndicator": False}


# ------------------------------------------------------------------ adapter
async def test_client_authorize_online_then_offline_from_the_cache(tmp_path: Path) -> None:
    preset(tmp_path / "s.db", FAST_RECONNECT)
    async with Csms() as csms:
        cfg: OcppClientSettings = settings(csms, tmp_path / "s.db")
        csms.authorize_answers["TAG1"] = "Accepted"
        async with running(cfg) as client:
            await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
            result = await asyncio.wait_for(client.authorize(IdToken("TAG1")), 5)
            assert (result.status, result.source) == ("Accepted", "CSMS")
            result = await asyncio.wait_for(client.authorize(IdToken("NOPE")), 5)
            assert (result.status, result.source) == ("Invalid", "CSMS")
            await csms.stop()
            await asyncio.sleep(0.1)
            result = await asyncio.wait_for(client.authorize(IdToken("TAG1")), 5)
            assert (result.status, result.source) == ("Accepted", "Cache")
            result = await asyncio.wait_for(client.authorize(IdToken("NOPE")), 5)
            assert (result.status, result.source) == ("Invalid", "Cache")


async def test_client_send_local_list_and_remote_start_with_authorization(tmp_path: Path) -> None:
    commands: asyncio.Queue[StationCommand] = asyncio.Queue()
    async with Csms() as csms, running(settings(csms, tmp_path / "s.db"), commands) as client:
        await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
        result = await csms.cp.call(
            call.SendLocalList(
                version_number=2,
                update_type="Full",
                local_authorization_list=[
                    {
                        "id_token": {"id_token": "LOCAL1", "type": "ISO14443"},
                        "id_token_info": {"status": "Accepted"},
                    }
                ],
            ),
            suppress=False,
        )
        assert result.status == "Accepted"
        version = await csms.cp.call(call.GetLocalListVersion(), suppress=False)
        assert version.version_number == 2
        assert await set_variables(csms, {("AuthCtrlr", "AuthorizeRemoteStart"): "true"}) == [
            "Accepted"
        ]
        csms.authorize_answers["TAG1"] = "Accepted"
        started = await csms.cp.call(
            call.RequestStartTransaction(
                id_token={"id_token": "TAG1", "type": "ISO14443"}, remote_start_id=4, evse_id=1
            ),
            suppress=False,
        )
        assert started.status == "Accepted"
        command = await asyncio.wait_for(commands.get(), 5)
        assert command == RemoteStart(1, IdToken("TAG1", "ISO14443"), 4)
        assert csms.received("Authorize")
        client.submit(meter(1))  # still alive
