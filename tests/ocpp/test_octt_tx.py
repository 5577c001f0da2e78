"""OCTT test cases of transactions, triggers, meter values, certificates and the device
model (OCPP 2.0.1 Part 6), played against the sans-I/O core with a fake clock.

Each test follows the steps of the test case it is named after; every payload the
station sends is also checked against the OCA schema.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from chargepoint.adapters.ocpp_client import OcppSchemas
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.blocks.transactions_block import TX_ENDED_SAMPLED_MAX
from chargepoint.ocpp.certificates import CertificateHash, InstalledCertificate, Outcome
from chargepoint.ocpp.device_model import ComponentKey, DeviceModel, VariableKey
from chargepoint.ocpp.outbox import parse_timestamp
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station import OcppStation, StationIdentity
from chargepoint.ocpp.station_io import (
    EvseActivity,
    EvseRating,
    IdToken,
    MeterSample,
    RemoteStart,
    RemoteStop,
)
from tests.core.ocpp_schemas import assert_schema_valid

from .helpers import IDENTITY, UTC_OFFSET, Harness, calls, minimal_result

TOKEN = IdToken("04A2B3C4")


def meter(evse_id: int = 1, import_wh: float = 1000, power_w: float = 7000) -> MeterSample:
    return MeterSample(evse_id, import_wh, 0, power_w, 230, power_w / 230)


def activity(
    evse_id: int = 1,
    *,
    connected: bool = True,
    authorized: bool = True,
    charging: bool = True,
    remote_start_id: int | None = None,
    import_wh: float = 1000,
) -> EvseActivity:
    return EvseActivity(
        evse_id=evse_id,
        connector_id=1,
        ev_connected=connected,
        authorized=authorized,
        power_path_closed=charging,
        energy_transfer=charging,
        meter=meter(evse_id, import_wh, 7000 if charging else 0),
        id_token=TOKEN if authorized else None,
        remote_start_id=remote_start_id,
    )


def valid(frames: list[Any]) -> list[Any]:
    """Check every CALL in ``frames`` against its OCA request schema."""
    for frame in calls(frames):
        assert_schema_valid(ProtocolVersion.V201, f"{frame[2]}Request.json", frame[3])
    return frames


def booted(overrides: dict[str, str] | None = None, **kwargs: Any) -> Harness:
    h = Harness(overrides=overrides, **kwargs)
    h.answer_all(h.boot(interval=86_400))  # no Heartbeat in the way
    return h


def report(h: Harness, event: EvseActivity | MeterSample) -> list[Any]:
    h.station.station_event(h.now, event)
    return valid(h.answer_all(h.drain()))


def trigger(h: Harness, requested: str, evse_id: int | None = None) -> list[Any]:
    payload: dict[str, Any] = {"requestedMessage": requested}
    if evse_id is not None:
        payload["evse"] = {"id": evse_id}
    frames = h.receive([2, "trg", "TriggerMessage", payload])
    assert_schema_valid(ProtocolVersion.V201, "TriggerMessageResponse.json", frames[0][2])
    seen = []
    while frames:
        frame = frames.pop(0)
        seen.append(frame)
        if frame[0] == 2:
            # the status notifications' answers are empty objects
            result = {} if frame[2].endswith("StatusNotification") else minimal_result(frame[2])
            frames += h.reply(frame, result)
    return valid(seen)


# ------------------------------------------------------------ F. Remote control
def test_tc_f_04_remote_start_first_cable_plugin_timeout() -> None:
    """TC_F_04_CS (E03.FR.05): TxStartPoint Authorized, EVConnectionTimeOut 30 s.

    Reusable state Authorized (remote): RequestStartTransaction, Accepted, the
    transaction starts (RemoteStart).  1. After the timeout, with no EV, the station
    sends TransactionEvent Ended (EVConnectTimeout, Timeout).  3. Authorized (remote)
    again: the EVSE is ready for a new session."""
    h = booted({"TxCtrlr.TxStartPoint": "Authorized", "TxCtrlr.EVConnectionTimeOut": "30"})
    request = {"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}, "remoteStartId": 7}
    answer = h.receive([2, "rs", "RequestStartTransaction", {**request, "evseId": 1}])
    assert answer[0] == [3, "rs", {"status": "Accepted"}]
    assert h.commands == [RemoteStart(1, TOKEN, 7)]
    [started] = calls(report(h, activity(connected=False, charging=False, remote_start_id=7)))
    assert (started[3]["eventType"], started[3]["triggerReason"]) == ("Started", "RemoteStart")
    assert started[3]["transactionInfo"]["remoteStartId"] == 7
    tx_id = started[3]["transactionInfo"]["transactionId"]

    assert calls(h.advance(29.9)) == []
    [ended] = calls(valid(h.answer_all(h.advance(0.1))), "TransactionEvent")
    assert ended[3]["eventType"] == "Ended"
    assert ended[3]["triggerReason"] == "EVConnectTimeout"
    assert ended[3]["transactionInfo"]["transactionId"] == tx_id
    assert ended[3]["transactionInfo"]["stoppedReason"] == "Timeout"
    assert h.commands[-1] == RemoteStop(tx_id, 1)  # the runtime withdraws it

    # Until the runtime has withdrawn it, a late plug-in starts nothing.
    assert calls(report(h, activity(connected=True, charging=False, remote_start_id=7))) == []
    assert calls(report(h, activity(connected=False, authorized=False, charging=False))) == []
    # 3. Authorized (remote) again.
    h.receive([2, "rs2", "RequestStartTransaction", {**request, "remoteStartId": 8}])
    [again] = calls(report(h, activity(connected=False, charging=False, remote_start_id=8)))
    assert (again[3]["eventType"], again[3]["transactionInfo"]["remoteStartId"]) == ("Started", 8)
    assert again[3]["transactionInfo"]["transactionId"] != tx_id


def test_tc_f_04_plugging_in_in_time_stops_the_clock() -> None:
    """TC_F_04_CS, the EV connected within EVConnectionTimeOut: the transaction goes on."""
    h = booted({"TxCtrlr.TxStartPoint": "Authorized", "TxCtrlr.EVConnectionTimeOut": "30"})
    report(h, activity(connected=False, charging=False, remote_start_id=7))
    h.advance(20)
    report(h, activity(connected=True, charging=False, remote_start_id=7))
    events = calls(h.answer_all(h.advance(3600)), "TransactionEvent")
    assert "Ended" not in [f[3]["eventType"] for f in events]
    assert not any(isinstance(c, RemoteStop) for c in h.commands)


def test_tc_f_13_trigger_message_transaction_event_specific_evse() -> None:
    """TC_F_13_CS: state EnergyTransferStarted.  1. TriggerMessage TransactionEvent,
    evse.id 1.  2. Accepted.  3. TransactionEvent: evse.id 1, triggerReason Trigger,
    chargingState Charging, meterValue with context Trigger."""
    h = booted()
    report(h, activity())
    frames = trigger(h, "TransactionEvent", 1)
    assert frames[0] == [3, "trg", {"status": "Accepted"}]
    [event] = calls(frames, "TransactionEvent")
    payload = event[3]
    assert payload["evse"]["id"] == 1
    assert (payload["eventType"], payload["triggerReason"]) == ("Updated", "Trigger")
    assert payload["transactionInfo"]["chargingState"] == "Charging"
    assert payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"


def test_tc_f_14_trigger_message_transaction_event_all_evse() -> None:
    """TC_F_14_CS: EnergyTransferStarted on every EVSE.  1. TriggerMessage
    TransactionEvent without evse.  2. Accepted.  3. One TransactionEvent per EVSE
    (evse.id, Trigger, Charging, meterValue context Trigger).  Without any
    transaction the trigger is Rejected."""
    h = booted()
    assert trigger(h, "TransactionEvent")[0] == [3, "trg", {"status": "Rejected"}]
    report(h, activity(1))
    report(h, activity(2))
    frames = trigger(h, "TransactionEvent")
    assert frames[0] == [3, "trg", {"status": "Accepted"}]
    events = [f[3] for f in calls(frames, "TransactionEvent")]
    assert [e["evse"]["id"] for e in events] == [1, 2]
    assert {e["triggerReason"] for e in events} == {"Trigger"}
    assert {e["transactionInfo"]["chargingState"] for e in events} == {"Charging"}
    assert {e["meterValue"][0]["sampledValue"][0]["context"] for e in events} == {"Trigger"}


def test_tc_f_11_trigger_message_meter_values_specific_evse() -> None:
    """TC_F_11_CS: 1. TriggerMessage MeterValues, evse.id 1.  2. Accepted.
    3. MeterValues for EVSE 1: AlignedDataCtrlr.Measurands, context Trigger."""
    h = booted()
    report(h, activity(1, authorized=False, charging=False, import_wh=4321))
    frames = trigger(h, "MeterValues", 1)
    assert frames[0] == [3, "trg", {"status": "Accepted"}]
    [values] = calls(frames, "MeterValues")
    assert values[3]["evseId"] == 1
    sampled = values[3]["meterValue"][0]["sampledValue"]
    assert {v["context"] for v in sampled} == {"Trigger"}
    assert {v["measurand"]: v["value"] for v in sampled}["Energy.Active.Import.Register"] == 4321


def test_tc_f_12_trigger_message_meter_values_all_evse() -> None:
    """TC_F_12_CS: 1. TriggerMessage MeterValues without evse.  2. Accepted.
    3. One MeterValues per EVSE, context Trigger."""
    h = booted()
    report(h, activity(1, authorized=False, charging=False))
    report(h, activity(2, authorized=False, charging=False))
    frames = trigger(h, "MeterValues")
    assert frames[0] == [3, "trg", {"status": "Accepted"}]
    assert [f[3]["evseId"] for f in calls(frames, "MeterValues")] == [1, 2]


def test_tc_f_15_trigger_message_log_status_notification_idle() -> None:
    """TC_F_15_CS: no upload runs.  1. TriggerMessage LogStatusNotification.
    2. Accepted.  3. LogStatusNotification with status Idle."""
    h = booted()
    frames = trigger(h, "LogStatusNotification")
    assert frames[0] == [3, "trg", {"status": "Accepted"}]
    [notification] = calls(frames, "LogStatusNotification")
    assert notification[3] == {"status": "Idle"}


def test_tc_f_15_while_an_upload_runs_the_block_reports_its_status() -> None:
    """TC_F_15_CS's counterpart: during a GetLog upload (N01) the triggered
    LogStatusNotification is the diagnostics block's: Uploading, with the requestId."""
    h = booted()
    log = {"logType": "DiagnosticsLog", "requestId": 7, "log": {"remoteLocation": "https://x/"}}
    assert h.receive([2, "g", "GetLog", log])[0][2]["status"] == "Accepted"
    [notification] = calls(trigger(h, "LogStatusNotification"), "LogStatusNotification")
    assert notification[3] == {"status": "Uploading", "requestId": 7}


def test_tc_f_18_trigger_message_firmware_status_notification_idle() -> None:
    """TC_F_18_CS: no update runs.  1. TriggerMessage FirmwareStatusNotification.
    2. Accepted.  3. FirmwareStatusNotification with status Idle."""
    h = booted()
    frames = trigger(h, "FirmwareStatusNotification")
    assert frames[0] == [3, "trg", {"status": "Accepted"}]
    [notification] = calls(frames, "FirmwareStatusNotification")
    assert notification[3] == {"status": "Idle"}


# -------------------------------------------------------------- J. Meter values
def test_tc_j_10_sampled_meter_values_tx_ended_interval() -> None:
    """TC_J_10_CS: SampledDataCtrlr.TxEndedInterval 10 s.  EnergyTransferStarted,
    then the EV is disconnected after 35 s: the Ended event carries the
    TxEndedMeasurands sampled every 10 s from the start (Sample.Periodic), the last
    value with context Transaction.End."""
    h = booted({"SampledDataCtrlr.TxEndedInterval": "10", "AlignedDataCtrlr.Interval": "0"})
    report(h, activity(import_wh=1000))
    start = h.now
    for second in range(1, 36):
        h.advance(1)
        report(h, meter(import_wh=1000 + second))
    [ended] = calls(report(h, activity(connected=False, authorized=False, charging=False)))
    assert ended[3]["eventType"] == "Ended"
    values = ended[3]["meterValue"]
    periodic = [v for v in values if v["sampledValue"][0]["context"] == "Sample.Periodic"]
    utc_start = start + h.station.utc_offset_s
    assert [parse_timestamp(v["timestamp"]) - utc_start for v in periodic] == [10, 20, 30]
    # the latest reading at each instant (the one of the second before)
    assert [v["sampledValue"][0]["value"] for v in periodic] == [1009, 1019, 1029]
    assert values[-1]["sampledValue"][0]["context"] == "Transaction.End"


def test_tc_j_10_a_long_transaction_keeps_a_bounded_evenly_spaced_record() -> None:
    """TC_J_10_CS over a very long transaction: at most TX_ENDED_SAMPLED_MAX samples
    are kept, evenly spaced from the first to the latest (the interval doubles)."""
    h = booted({"SampledDataCtrlr.TxEndedInterval": "1", "AlignedDataCtrlr.Interval": "0"})
    report(h, activity())
    start = h.now
    h.advance(3 * TX_ENDED_SAMPLED_MAX + 0.5)
    [ended] = calls(report(h, activity(connected=False, authorized=False, charging=False)))
    periodic = [
        parse_timestamp(v["timestamp"]) - (start + h.station.utc_offset_s)
        for v in ended[3]["meterValue"]
        if v["sampledValue"][0]["context"] == "Sample.Periodic"
    ]
    assert len(periodic) <= TX_ENDED_SAMPLED_MAX
    assert len({round(b - a, 3) for a, b in itertools.pairwise(periodic)}) == 1
    assert periodic[-1] > 3 * TX_ENDED_SAMPLED_MAX - 4


# ------------------------------------------------------------ M. Certificates
class StationCertificates:
    """A store holding a CSMS root and the station's own (signed) certificate."""

    ROOT = CertificateHash("aa", "bb", "1")
    OWN = CertificateHash("cc", "dd", "2")

    def __init__(self) -> None:
        self.deleted: list[CertificateHash] = []

    def installed(self) -> list[InstalledCertificate]:
        return [
            InstalledCertificate("CSMSRootCertificate", self.ROOT),
            InstalledCertificate("ChargingStationCertificate", self.OWN),
        ]

    def has_station_certificate(self) -> bool:
        return True

    def install_root(self, use: str, pem: str) -> Outcome:
        return Outcome(True)

    def delete(self, target: CertificateHash) -> Outcome:
        self.deleted.append(target)
        return Outcome(True)

    def create_csr(self, use: str, common_name: str, organization: str) -> str:
        return ""

    def accept_signed(self, use: str, chain_pem: str) -> Outcome:
        return Outcome(True)


def test_tc_m_23_unable_to_delete_the_charging_station_certificate() -> None:
    """TC_M_23_CS (M04.FR.06): 1. GetInstalledCertificates, certificateType omitted.
    2. DeleteCertificate with the hash of the ChargingStationCertificate.
    3. DeleteCertificateResponse Failed; nothing is deleted."""
    store = StationCertificates()
    h = booted(certificates=store)
    listed = h.receive([2, "g", "GetInstalledCertificateIds", {}])[0][2]
    assert_schema_valid(ProtocolVersion.V201, "GetInstalledCertificateIdsResponse.json", listed)
    assert [c["certificateType"] for c in listed["certificateHashDataChain"]] == [
        "CSMSRootCertificate"
    ]
    hash_data = store.OWN.to_json()
    answer = h.receive([2, "d", "DeleteCertificate", {"certificateHashData": hash_data}])[0][2]
    assert_schema_valid(ProtocolVersion.V201, "DeleteCertificateResponse.json", answer)
    assert answer["status"] == "Failed"
    assert store.deleted == []


# ------------------------------------------------------------ B. Provisioning
#: Appendix 3 (OCPP 2.0.1 Part 2): the required variables of each component this
#: station has, as (component, variable, variable instance).
REQUIRED = {
    ("AlignedDataCtrlr", "Interval", None),
    ("AlignedDataCtrlr", "Measurands", None),
    ("AlignedDataCtrlr", "TxEndedInterval", None),
    ("AlignedDataCtrlr", "TxEndedMeasurands", None),
    ("AuthCtrlr", "AuthorizeRemoteStart", None),
    ("AuthCtrlr", "LocalAuthorizeOffline", None),
    ("AuthCtrlr", "LocalPreAuthorize", None),
    ("ChargingStation", "Available", None),
    ("ChargingStation", "AvailabilityState", None),
    ("ChargingStation", "SupplyPhases", None),
    ("ClockCtrlr", "DateTime", None),
    ("ClockCtrlr", "TimeSource", None),
    ("Connector", "Available", None),
    ("Connector", "AvailabilityState", None),
    ("Connector", "ConnectorType", None),
    ("Connector", "SupplyPhases", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetReport"),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", "BytesPerMessage", "SetVariables"),
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"),
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables"),
    ("EVSE", "Available", None),
    ("EVSE", "AvailabilityState", None),
    ("EVSE", "Power", None),
    ("EVSE", "SupplyPhases", None),
    ("LocalAuthListCtrlr", "BytesPerMessage", None),
    ("LocalAuthListCtrlr", "Entries", None),
    ("LocalAuthListCtrlr", "ItemsPerMessage", None),
    ("OCPPCommCtrlr", "FileTransferProtocols", None),
    ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"),
    ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"),
    ("OCPPCommCtrlr", "MessageTimeout", "Default"),
    ("OCPPCommCtrlr", "NetworkConfigurationPriority", None),
    ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", None),
    ("OCPPCommCtrlr", "OfflineThreshold", None),
    ("OCPPCommCtrlr", "ResetRetries", None),
    ("OCPPCommCtrlr", "RetryBackOffRandomRange", None),
    ("OCPPCommCtrlr", "RetryBackOffRepeatTimes", None),
    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum", None),
    ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", None),
    ("OCPPCommCtrlr", "WebSocketPingInterval", None),
    ("SampledDataCtrlr", "TxEndedInterval", None),
    ("SampledDataCtrlr", "TxEndedMeasurands", None),
    ("SampledDataCtrlr", "TxStartedMeasurands", None),
    ("SampledDataCtrlr", "TxUpdatedInterval", None),
    ("SampledDataCtrlr", "TxUpdatedMeasurands", None),
    ("SecurityCtrlr", "CertificateEntries", None),
    ("SecurityCtrlr", "Identity", None),
    ("SecurityCtrlr", "OrganizationName", None),
    ("SecurityCtrlr", "SecurityProfile", None),
    ("SmartChargingCtrlr", "Entries", "ChargingProfiles"),
    ("SmartChargingCtrlr", "LimitChangeSignificance", None),
    ("SmartChargingCtrlr", "PeriodsPerSchedule", None),
    ("SmartChargingCtrlr", "ProfileStackLevel", None),
    ("SmartChargingCtrlr", "RateUnit", None),
    ("TxCtrlr", "EVConnectionTimeOut", None),
    ("TxCtrlr", "StopTxOnEVSideDisconnect", None),
    ("TxCtrlr", "StopTxOnInvalidId", None),
    ("TxCtrlr", "TxStartPoint", None),
    ("TxCtrlr", "TxStopPoint", None),
}
#: components that exist once per EVSE / per connector
_PER_EVSE = {"EVSE", "Connector"}


def test_tc_b_53_full_inventory_reports_every_required_variable() -> None:
    """TC_B_53_CS: 1. GetBaseReport FullInventory.  2. Accepted.  3. NotifyReport
    parts (seqNo from 0, tbc until the last) hold every required variable of every
    component the station has, for each EVSE and connector."""
    h = booted()
    frames = h.receive([2, "r", "GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"}])
    assert frames[0] == [3, "r", {"status": "Accepted"}]
    parts = [f[3] for f in calls(valid(h.answer_all(frames)), "NotifyReport")]
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert parts[-1]["tbc"] is False
    reported = {
        (
            d["component"]["name"],
            d["component"].get("evse", {}).get("id"),
            d["component"].get("evse", {}).get("connectorId"),
            d["variable"]["name"],
            d["variable"].get("instance"),
        ): d
        for p in parts
        for d in p["reportData"]
    }
    for component, variable, instance in sorted(REQUIRED, key=str):
        if component not in _PER_EVSE:
            assert (component, None, None, variable, instance) in reported, (component, variable)
            continue
        for evse_id in IDENTITY.evse_connectors:
            connector = 1 if component == "Connector" else None
            key = (component, evse_id, connector, variable, instance)
            assert key in reported, key
    power = reported[("EVSE", 1, None, "Power", None)]
    assert power["variableCharacteristics"]["unit"] == "W"
    phases = reported[("EVSE", 1, None, "SupplyPhases", None)]
    assert phases["variableAttribute"][0]["value"] == "3"


def test_tc_b_53_values_follow_the_evse_ratings() -> None:
    """TC_B_53_CS with one AC single-phase EVSE and one DC EVSE: SupplyPhases 1 and 0
    (0: DC), the station's the most its AC EVSEs use; EVSE.Power follows the meter."""
    identity = StationIdentity(
        vendor_name="OpenV2G",
        model="BiDi-11",
        evse_connectors={1: 1, 2: 1},
        evse_ratings={
            1: EvseRating(phases=1, connector_types=("sType2",)),
            2: EvseRating(dc=True, voltage_v=400, phases=1, connector_types=("no-such-plug",)),
        },
    )
    specs = dm.standard_variables(
        identity="CS-001",
        security_profile=1,
        basic_auth_password=None,
        evse_connectors=identity.evse_connectors,
        evse_max_power_w={e: r.rated_power_w for e, r in identity.evse_ratings.items()},
    )
    model = DeviceModel(specs, {})
    station = OcppStation(
        identity=identity,
        model=model,
        schemas=OcppSchemas(),
        rng=random.Random(1),
        new_id=lambda: "x",
        utc_offset_s=UTC_OFFSET,
    )

    def value(name: str, variable: str, evse: int | None, connector: int | None = None) -> str:
        found = model.value(
            ComponentKey(name, evse_id=evse, connector_id=connector), VariableKey(variable)
        )
        assert found is not None
        return found

    assert value("EVSE", "SupplyPhases", 1) == "1"
    assert value("Connector", "SupplyPhases", 1, 1) == "1"
    assert value("EVSE", "SupplyPhases", 2) == "0"
    assert value("ChargingStation", "SupplyPhases", None) == "1"
    assert value("Connector", "ConnectorType", 1, 1) == "sType2"  # the configured plug
    assert value("Connector", "ConnectorType", 2, 1) == "Unknown"  # not a ConnectorEnumType
    station.station_event(1000.0, meter(2, power_w=-11_000.4))
    assert value("EVSE", "Power", 2) == "-11000"
    # Appendix 3: EVSE.Power's maxLimit is the rating (EVSE 1: 32 A x 230 V x 1 phase)
    assert model.max_limit(ComponentKey("EVSE", evse_id=1), VariableKey("Power")) == 7360.0
    station.station_event(1001.0, meter(1, power_w=9_000.0))  # a meter reading above it
    assert value("EVSE", "Power", 1) == "7360"
