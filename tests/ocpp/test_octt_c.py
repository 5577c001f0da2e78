"""OCTT test cases of local authorization (OCPP 2.0.1 Part 6, blocks C and E) and the
StopTxOnInvalidId / MaxEnergyOnInvalidId rules (E05), played against the sans-I/O core
with a fake clock.

The token reader itself (a tap, the same card stopping, another card refused) is
``chargepoint.adapters.token_auth``; its OCTT cases are in tests/e2e/test_token_reader.py.
Here the test plays both the CSMS and the runtime: it presents a token with
``OcppStation.authorize`` and reports what the EVSE does as ``EvseActivity``.
"""

from __future__ import annotations

from typing import Any

from chargepoint.ocpp.station_io import (
    Deauthorize,
    EvseActivity,
    IdToken,
    MeterSample,
    StoppedReason,
)

from .helpers import calls
from .test_authorization import AuthHarness
from .test_octt_tx import valid

TOKEN = IdToken("04A2B3C4", "ISO14443")


def booted(overrides: dict[str, str] | None = None) -> AuthHarness:
    h = AuthHarness(overrides=overrides)
    h.answer_all(h.boot(interval=86_400))  # no Heartbeat in the way
    return h


def evse(
    *,
    connected: bool = True,
    authorized: bool = False,
    charging: bool = False,
    import_wh: float = 1000,
    stopped: StoppedReason | None = None,
) -> EvseActivity:
    """EVSE 1 as the runtime reports it; ``authorized`` carries :data:`TOKEN`."""
    power_w = 7000.0 if charging else 0.0
    return EvseActivity(
        evse_id=1,
        connector_id=1,
        ev_connected=connected,
        authorized=authorized,
        power_path_closed=charging,
        energy_transfer=charging,
        meter=MeterSample(1, import_wh, 0, power_w, 230, power_w / 230),
        id_token=TOKEN if authorized else None,
        stopped_reason=stopped,
    )


def report(h: AuthHarness, event: EvseActivity | MeterSample) -> list[Any]:
    """The runtime reports ``event``; returns the TransactionEvents it sent (unanswered)."""
    h.station.station_event(h.now, event)
    return calls(valid(h.drain()), "TransactionEvent")


def tx_events(frames: list[Any]) -> list[dict[str, Any]]:
    return [f[3] for f in calls(frames, "TransactionEvent")]


def present(h: AuthHarness, token: IdToken, status: str | None) -> tuple[int, list[Any]]:
    """The driver presents ``token``; the CSMS answers ``status`` if asked."""
    ref, frames = h.authorize(token)
    asked = calls(frames, "Authorize")
    if asked and status is not None:
        h.reply(asked[0], {"idTokenInfo": {"status": status}})
    return ref, asked


def ev_connected_pre_session(h: AuthHarness) -> str:
    """Reusable state EVConnectedPreSession: the cable plugged in starts the transaction
    (TxStartPoint EVConnected), answered; returns its transactionId."""
    [started] = report(h, evse())
    assert (started[3]["eventType"], started[3]["triggerReason"]) == ("Started", "CablePluggedIn")
    h.reply(started, {})
    tx_id: str = started[3]["transactionInfo"]["transactionId"]
    return tx_id


# ----------------------------------------------------- C01: refused tokens start nothing
def _refused_token_starts_nothing(status: str) -> None:
    """Shared steps of TC_C_02/06/07/56: EVConnectedPreSession, present the token, the
    CSMS answers ``status``; no TransactionEvent follows within MessageTimeout."""
    h = booted()
    ev_connected_pre_session(h)
    ref, asked = present(h, TOKEN, status)
    assert asked[0][3] == {"idToken": {"idToken": TOKEN.id_token, "type": TOKEN.kind}}
    assert h.results[ref].status == status and not h.results[ref].accepted
    # The runtime does not authorize the EVSE: nothing but waiting happens.
    assert calls(h.advance(31), "TransactionEvent") == []
    # C10: the answer is cached with its status (the next presentation is asked
    # about again, C12.FR.05, see test_tc_c_09_...).
    assert h.store.state["auth_cache"]["entries"][0][1]["info"]["status"] == status


def test_tc_c_02_local_start_authorization_invalid() -> None:
    """TC_C_02_CS (C01.FR.02): state EVConnectedPreSession.  Present an idToken.
    1. AuthorizeRequest with it.  2. AuthorizeResponse Invalid.  The station sends no
    TransactionEventRequest after step 1 (the OCTT waits MessageTimeout)."""
    _refused_token_starts_nothing("Invalid")


def test_tc_c_06_local_start_authorization_blocked() -> None:
    """TC_C_06_CS (C01): as TC_C_02 with idTokenInfo.status Blocked."""
    _refused_token_starts_nothing("Blocked")


def test_tc_c_07_local_start_authorization_expired() -> None:
    """TC_C_07_CS (C01.FR.02): as TC_C_02 with idTokenInfo.status Expired."""
    _refused_token_starts_nothing("Expired")


def test_tc_c_56_local_start_authorization_unknown() -> None:
    """TC_C_56_CS (C01.FR.02): as TC_C_02 with idTokenInfo.status Unknown (the same
    with a tap on the reader: tests/e2e/test_token_reader.py)."""
    _refused_token_starts_nothing("Unknown")


def test_tc_c_09_cached_invalid_token_is_asked_about_again() -> None:
    """TC_C_09_CS (C12.FR.05, C10.FR.03): LocalPreAuthorize true, the token cached as
    Invalid, EVConnectedPreSession.  Present it: 1. AuthorizeRequest (a cached status
    other than Accepted is checked with the CSMS).  2. Invalid: nothing starts."""
    h = booted({"AuthCtrlr.LocalPreAuthorize": "true"})
    present(h, TOKEN, "Invalid")  # memory state IdTokenCached (Invalid)
    ev_connected_pre_session(h)
    ref, asked = present(h, TOKEN, "Invalid")
    assert asked and h.results[ref].source == "CSMS" and not h.results[ref].accepted
    assert calls(h.advance(31), "TransactionEvent") == []


# ------------------------------------------------------------ C12: through the cache
def test_tc_c_08_authorization_through_authorization_cache_accepted() -> None:
    """TC_C_08_CS (C12.FR.02/03): AuthCacheCtrlr.Enabled and AuthCtrlr.LocalPreAuthorize
    true, the token cached as Accepted, EVConnectedPreSession.  Present the token:
    1. no AuthorizeRequest; TransactionEventRequest Updated, triggerReason Authorized,
    with the idToken.  2. Accepted.  3. EnergyTransferStarted: ChargingStateChanged,
    Charging."""
    h = booted({"AuthCtrlr.LocalPreAuthorize": "true"})
    present(h, TOKEN, "Accepted")  # memory state IdTokenCached
    tx_id = ev_connected_pre_session(h)
    ref, asked = present(h, TOKEN, None)
    assert asked == [] and (h.results[ref].status, h.results[ref].source) == ("Accepted", "Cache")
    [authorized] = report(h, evse(authorized=True))
    payload = authorized[3]
    assert (payload["eventType"], payload["triggerReason"]) == ("Updated", "Authorized")
    assert payload["idToken"] == {"idToken": TOKEN.id_token, "type": TOKEN.kind}
    assert payload["transactionInfo"]["transactionId"] == tx_id
    h.reply(authorized, {"idTokenInfo": {"status": "Accepted"}})
    [charging] = report(h, evse(authorized=True, charging=True))
    assert charging[3]["triggerReason"] == "ChargingStateChanged"
    assert charging[3]["transactionInfo"]["chargingState"] == "Charging"


# ------------------------------------------------------ E: local start and stop options
def test_tc_e_03_local_start_cable_plugin_first() -> None:
    """TC_E_03_CS (E02, C01.FR.02): EVConnectedPreSession.  1. Authorized (local):
    AuthorizeRequest, Accepted, TransactionEventRequest Updated, triggerReason
    Authorized, with the idToken (E02: the idToken goes with the first event after
    the authorization).  2. EnergyTransferStarted: ChargingStateChanged, Charging."""
    h = booted()
    tx_id = ev_connected_pre_session(h)
    ref, asked = present(h, TOKEN, "Accepted")
    assert asked and h.results[ref].accepted
    [authorized] = report(h, evse(authorized=True))
    assert authorized[3]["triggerReason"] == "Authorized"
    assert authorized[3]["idToken"]["idToken"] == TOKEN.id_token
    assert authorized[3]["transactionInfo"]["transactionId"] == tx_id
    h.reply(authorized, {"idTokenInfo": {"status": "Accepted"}})
    [charging] = report(h, evse(authorized=True, charging=True))
    assert charging[3]["transactionInfo"]["chargingState"] == "Charging"


def test_tc_e_06_local_stop_transaction_accepted() -> None:
    """TC_E_06_CS (E07.FR.04, E06.FR.15): EnergyTransferStarted.  1. StopAuthorized
    (local): the same idToken presented again (no AuthorizeRequest, E07: the reader's
    rule), the runtime withdraws the authorization and opens the power path:
    TransactionEventRequest Ended, triggerReason StopAuthorized, stoppedReason Local.
    2-3. EVConnectedPostSession, EVDisconnected: no further TransactionEvent."""
    h = booted()
    tx_id = ev_connected_pre_session(h)
    present(h, TOKEN, "Accepted")
    h.reply(report(h, evse(authorized=True))[0], {"idTokenInfo": {"status": "Accepted"}})
    h.reply(report(h, evse(authorized=True, charging=True))[0], {})
    [ended] = report(h, evse(stopped=StoppedReason.LOCAL, import_wh=1500))
    payload = ended[3]
    assert (payload["eventType"], payload["triggerReason"]) == ("Ended", "StopAuthorized")
    assert payload["transactionInfo"] == {
        "transactionId": tx_id,
        "chargingState": "EVConnected",
        "stoppedReason": "Local",
    }
    h.reply(ended, {})
    assert report(h, evse(connected=False)) == []


# ----------------------------------------- E05: the CSMS refuses a running transaction
def start_offline_transaction(h: AuthHarness) -> list[Any]:
    """Reusable state StartOfflineTransaction: offline, a token accepted without the
    CSMS, the EV plugged in and charging; then the CSMS is back.  Returns the queued
    TransactionEvents as they are sent (unanswered), oldest first."""
    h.station.connection_lost(h.now, "gone")
    ref, asked = present(h, TOKEN, None)
    assert asked == [] and h.results[ref].accepted
    report(h, evse(connected=False, authorized=True))
    report(h, evse(authorized=True))
    report(h, evse(authorized=True, charging=True))
    frames = h.connect()
    return calls(frames, "TransactionEvent")


def test_tc_e_16_stop_tx_on_invalid_id_deauthorizes_the_transaction() -> None:
    """TC_E_16_CS (E06.FR.04, E05, C15.FR.04): TxStopPoint with Authorized,
    OfflineTxForUnknownIdEnabled and StopTxOnInvalidId true, StartOfflineTransaction.
    1. The queued TransactionEvents go out (offline true).  2. The one with the idToken
    is answered Invalid.  3. The station stops the charge (Deauthorize to the runtime)
    and sends TransactionEvent Ended, triggerReason Deauthorized, stoppedReason
    DeAuthorized."""
    h = booted({"AuthCtrlr.OfflineTxForUnknownIdEnabled": "true"})
    [started] = start_offline_transaction(h)
    assert started[3]["offline"] is True and started[3]["idToken"]["idToken"] == TOKEN.id_token
    tx_id = started[3]["transactionInfo"]["transactionId"]
    frames = h.reply(started, {"idTokenInfo": {"status": "Invalid"}})
    assert Deauthorize(1, tx_id) in h.commands
    # The rest of the queue, then the Ended event.
    events = tx_events(h.answer_all(frames))
    ended = events[-1]
    assert (ended["eventType"], ended["triggerReason"]) == ("Ended", "Deauthorized")
    assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert ended["transactionInfo"]["transactionId"] == tx_id
    # The runtime has carried the command out: nothing more for that transaction.
    assert report(h, evse(stopped=StoppedReason.DE_AUTHORIZED)) == []


def test_tc_c_16_cached_token_invalid_at_the_csms_stop_tx_on_invalid_id() -> None:
    """TC_C_16_CS (C12.FR.02/04): LocalPreAuthorize, LocalAuthorizeOffline and
    StopTxOnInvalidId true, the token cached as Accepted.  1. The CSMS goes away.
    Present the token: accepted from the cache, charging starts.  2. The CSMS is back
    and answers the TransactionEvent with the idToken Invalid.  3. The transaction is
    deauthorized: Ended, Deauthorized / DeAuthorized; the runtime stops the charge."""
    h = booted({"AuthCtrlr.LocalPreAuthorize": "true"})
    present(h, TOKEN, "Accepted")  # memory state IdTokenCached
    [started] = start_offline_transaction(h)
    tx_id = started[3]["transactionInfo"]["transactionId"]
    events = tx_events(h.answer_all(h.reply(started, {"idTokenInfo": {"status": "Invalid"}})))
    assert Deauthorize(1, tx_id) in h.commands
    assert (events[-1]["triggerReason"], events[-1]["transactionInfo"]["stoppedReason"]) == (
        "Deauthorized",
        "DeAuthorized",
    )
    # C10: the cache now holds the CSMS's verdict.
    assert h.store.state["auth_cache"]["entries"][0][1]["info"]["status"] == "Invalid"


def charging_online(h: AuthHarness) -> tuple[str, list[Any]]:
    """EVConnectedPreSession, then Authorized (local, Accepted) and charging; returns
    the transactionId and the (unanswered) Updated event that carries the idToken."""
    tx_id = ev_connected_pre_session(h)
    present(h, TOKEN, "Accepted")
    [authorized] = report(h, evse(authorized=True))
    return tx_id, authorized


def test_tc_c_15_max_energy_on_invalid_id() -> None:
    """TC_C_15_CS (E05, C12.FR.04): StopTxOnInvalidId false, MaxEnergyOnInvalidId 500.
    The CSMS answers the idToken's TransactionEvent Invalid: the charge goes on until
    500 Wh more have been delivered, then the transaction is deauthorized (Ended,
    Deauthorized / DeAuthorized) and the runtime stops the charge."""
    h = booted({"TxCtrlr.StopTxOnInvalidId": "false", "TxCtrlr.MaxEnergyOnInvalidId": "500"})
    tx_id, authorized = charging_online(h)
    h.reply(authorized, {"idTokenInfo": {"status": "Invalid"}})
    h.reply(report(h, evse(authorized=True, charging=True))[0], {})
    assert not any(isinstance(c, Deauthorize) for c in h.commands)
    for wh in (1200, 1499):
        assert report(h, evse(authorized=True, charging=True, import_wh=wh)) == []
    assert not any(isinstance(c, Deauthorize) for c in h.commands)
    h.station.station_event(h.now, MeterSample(1, 1500, 0, 7000, 230, 30.4))
    events = tx_events(h.answer_all(h.drain()))
    assert h.commands[-1] == Deauthorize(1, tx_id)
    assert (events[-1]["eventType"], events[-1]["triggerReason"]) == ("Ended", "Deauthorized")
    assert events[-1]["transactionInfo"]["stoppedReason"] == "DeAuthorized"


def test_tc_c_26_stop_tx_on_invalid_id_false_keeps_charging() -> None:
    """TC_C_26_CS (C15.FR.02/06/08): OfflineTxForUnknownIdEnabled true, StopTxOnInvalidId
    false, MaxEnergyOnInvalidId 0, StartOfflineTransaction.  1-2. The queued events go
    out; the one with the idToken is answered Invalid: the transaction goes on.
    3. Present the token again, unplug: Ended, triggerReason StopAuthorized."""
    h = booted(
        {"AuthCtrlr.OfflineTxForUnknownIdEnabled": "true", "TxCtrlr.StopTxOnInvalidId": "false"}
    )
    [started] = start_offline_transaction(h)
    h.answer_all(h.reply(started, {"idTokenInfo": {"status": "Invalid"}}))
    assert not any(isinstance(c, Deauthorize) for c in h.commands)
    assert report(h, evse(authorized=True, charging=True, import_wh=90_000)) == []
    [ended] = report(h, evse(stopped=StoppedReason.LOCAL))
    assert (ended[3]["eventType"], ended[3]["triggerReason"]) == ("Ended", "StopAuthorized")


def test_e05_deauthorized_without_authorized_stop_point_reports_and_goes_on() -> None:
    """E05 with TxStopPoint EVConnected only: the invalid answer deauthorizes (the
    runtime stops the charge), an Updated event says triggerReason Deauthorized, and
    the transaction ends when the EV is unplugged."""
    h = booted({"TxCtrlr.TxStopPoint": "EVConnected"})
    tx_id, authorized = charging_online(h)
    frames = h.reply(authorized, {"idTokenInfo": {"status": "Blocked"}})
    assert h.commands[-1] == Deauthorize(1, tx_id)
    [deauthorized] = tx_events(frames)
    assert (deauthorized["eventType"], deauthorized["triggerReason"]) == ("Updated", "Deauthorized")
    h.answer_all(frames)
    # The runtime confirms (authorization gone), later the EV leaves.
    assert report(h, evse(stopped=StoppedReason.DE_AUTHORIZED)) == []
    [ended] = report(h, evse(connected=False, stopped=StoppedReason.DE_AUTHORIZED))
    assert ended[3]["eventType"] == "Ended"
