"""Variable monitoring (OCPP functional block N, N02-N08) against the sans-I/O core:
SetVariableMonitoring, ClearVariableMonitoring, SetMonitoringBase,
SetMonitoringLevel, GetMonitoringReport and the NotifyEvents of the monitors.
The test plays the CSMS (and the runtime where values change); every payload
both ways is checked against the OCA schemas of the version in use."""

from __future__ import annotations

import math
from typing import Any

import pytest

from chargepoint.ocpp.blocks.monitoring import MAX_MONITORS
from chargepoint.ocpp.outbox import parse_timestamp
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station_io import (
    ConnectorStatus,
    ConnectorStatusChanged,
    IdToken,
    SessionEnded,
    SessionStarted,
    StoppedReason,
)
from tests.core.ocpp_schemas import assert_schema_valid

from .helpers import FakeStore, Harness, boot_result, calls, minimal_result
from .test_station import sample

V201 = ProtocolVersion.V201
V21 = ProtocolVersion.V21
VERSIONS = pytest.mark.parametrize("version", [V201, V21], ids=["2.0.1", "2.1"])

EVSE1 = {"name": "EVSE", "evse": {"id": 1}}
POWER = {"name": "Power"}
COMM = {"name": "OCPPCommCtrlr"}
HEARTBEAT = {"name": "HeartbeatInterval"}


class Csms:
    """The CSMS side of one station: calls with schema checks, answers its CALLs."""

    def __init__(
        self, version: ProtocolVersion = V201, store: FakeStore | None = None, **overrides: str
    ) -> None:
        self.version = version
        self.h = Harness(store, overrides=overrides or None)
        frames = self.h.connect(version)
        self.answer(self.h.reply(frames[-1], boot_result()))
        self.uid = 0
        #: every NotifyEvent / NotifyMonitoringReport payload the station sent
        self.events: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []

    def answer(self, frames: list[Any]) -> None:
        """Answer every CALL in ``frames`` and what follows; keep the N messages."""
        pending = list(frames)
        while pending:
            frame = pending.pop(0)
            if frame[0] != 2:
                continue
            action, payload = frame[2], frame[3]
            assert_schema_valid(self.version, f"{action}Request.json", payload)
            if action == "NotifyEvent":
                self.events.append(payload)
            elif action == "NotifyMonitoringReport":
                self.reports.append(payload)
            result = {} if action == "NotifyMonitoringReport" else minimal_result(action)
            pending += self.h.reply(frame, result)

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CALL from the CSMS; its CALLRESULT payload (CALLERROR: the frame)."""
        assert_schema_valid(self.version, f"{action}Request.json", payload)
        self.uid += 1
        uid = f"csms-{self.uid}"
        frames = self.h.receive([2, uid, action, payload])
        [answer] = [f for f in frames if f[0] in (3, 4) and f[1] == uid]
        self.answer(frames)
        if answer[0] == 4:
            return {"error": answer[2]}
        assert_schema_valid(self.version, f"{action}Response.json", answer[2])
        result: dict[str, Any] = answer[2]
        return result

    def set_monitors(self, *entries: dict[str, Any]) -> list[dict[str, Any]]:
        answer = self.call("SetVariableMonitoring", {"setMonitoringData": list(entries)})
        results: list[dict[str, Any]] = answer["setMonitoringResult"]
        return results

    def event(self, station_event: Any) -> None:
        self.h.station.station_event(self.h.now, station_event)
        self.answer(self.h.drain())

    def advance(self, seconds: float) -> None:
        self.answer(self.h.advance(seconds))

    def event_data(self) -> list[dict[str, Any]]:
        """The eventData entries sent since the last call."""
        out = [data for payload in self.events for data in payload["eventData"]]
        self.events.clear()
        return out


def monitor(
    kind: str, value: float, *, component: dict[str, Any] = EVSE1, severity: int = 5, **extra: Any
) -> dict[str, Any]:
    variable = HEARTBEAT if component is COMM else POWER
    return {
        "type": kind,
        "value": value,
        "severity": severity,
        "component": component,
        "variable": extra.pop("variable", variable),
        **extra,
    }


# ----------------------------------------------------------------- N04 / N02
@VERSIONS
def test_n04_set_one_monitor_then_n02_report_it(version: ProtocolVersion) -> None:
    """N04, then N02: 1-2 SetVariableMonitoring UpperThreshold 10000 on EVSE 1
    Power, severity 5: Accepted with an id the station assigns; 3-4
    GetMonitoringReport without criteria or filter (N02.FR.11): Accepted; 5-6
    NotifyMonitoringReport seqNo 0, tbc false, the monitor as set."""
    csms = Csms(version)
    [result] = csms.set_monitors(monitor("UpperThreshold", 10000))
    assert result["status"] == "Accepted"
    assert result["id"] == 1
    assert csms.call("GetMonitoringReport", {"requestId": 7}) == {"status": "Accepted"}
    [report] = csms.reports
    assert (report["requestId"], report["seqNo"], report["tbc"]) == (7, 0, False)
    [data] = report["monitor"]
    assert data["component"] == EVSE1 and data["variable"] == POWER
    expected = {"id": 1, "transaction": False, "value": 10000, "type": "UpperThreshold"}
    assert data["variableMonitoring"][0].items() >= {**expected, "severity": 5}.items()
    if version is V21:
        assert data["variableMonitoring"][0]["eventNotificationType"] == "CustomMonitor"


@VERSIONS
def test_n04_every_set_monitoring_status(version: ProtocolVersion) -> None:
    """N04: one SetVariableMonitoring with an entry for each outcome: Accepted,
    UnknownComponent, UnknownVariable, UnsupportedMonitorType (a threshold on a
    boolean), Rejected (severity 10, a negative Delta (N04.FR.14), a threshold beyond
    the variable's limits, an unknown id (N04.FR.13), a WriteOnly variable) and
    Duplicate (same variable, type and severity without an id)."""
    csms = Csms(version)
    auth = {"name": "AuthCtrlr"}
    results = csms.set_monitors(
        monitor("UpperThreshold", 10000),
        monitor("UpperThreshold", 1, component={"name": "NoSuchCtrlr"}),
        monitor("UpperThreshold", 1, variable={"name": "NoSuchVariable"}),
        monitor("UpperThreshold", 1, component=auth, variable={"name": "Enabled"}),
        monitor("LowerThreshold", 1, severity=10),
        monitor("Delta", -5),
        monitor("LowerThreshold", -1, component=COMM),
        monitor("Delta", 5, id=99),
        monitor(
            "Delta", 0, component={"name": "SecurityCtrlr"}, variable={"name": "BasicAuthPassword"}
        ),
        monitor("UpperThreshold", 20000),
    )
    assert [r["status"] for r in results] == [
        "Accepted",
        "UnknownComponent",
        "UnknownVariable",
        "UnsupportedMonitorType",
        "Rejected",
        "Rejected",
        "Rejected",
        "Rejected",
        "Rejected",
        "Duplicate",
    ]
    if version is V21:
        # OCPP 2.1 TargetDelta monitors are not supported.
        [result] = csms.set_monitors(monitor("TargetDelta", 5))
        assert result["status"] == "UnsupportedMonitorType"


def test_n04_replace_a_monitor_by_id() -> None:
    """N04: a SetMonitoringData with the id of an installed monitor replaces it (same
    id); with the id of a monitor on another variable it is Rejected (N04.FR.16)."""
    csms = Csms()
    [first] = csms.set_monitors(monitor("UpperThreshold", 10000))
    [again] = csms.set_monitors(monitor("UpperThreshold", 11000, id=first["id"], severity=2))
    assert (again["status"], again["id"]) == ("Accepted", first["id"])
    [other] = csms.set_monitors(monitor("LowerThreshold", 60, component=COMM, id=first["id"]))
    assert other["status"] == "Rejected"
    csms.call("GetMonitoringReport", {"requestId": 1})
    [entry] = csms.reports[0]["monitor"][0]["variableMonitoring"]
    assert (entry["value"], entry["severity"]) == (11000, 2)


def test_n04_message_limits_and_the_monitor_cap() -> None:
    """N04.FR.09: more entries than MonitoringCtrlr ItemsPerMessage
    SetVariableMonitoring -> CALLERROR OccurrenceConstraintViolation, longer than
    BytesPerMessage -> FormatViolation; beyond MAX_MONITORS monitors -> Rejected."""
    csms = Csms()
    too_many = [monitor("Delta", n) for n in range(21)]
    answer = csms.call("SetVariableMonitoring", {"setMonitoringData": too_many})
    assert answer == {"error": "OccurrenceConstraintViolation"}
    tiny = Csms(**{"MonitoringCtrlr.BytesPerMessage[SetVariableMonitoring]": "100"})
    answer = tiny.call("SetVariableMonitoring", {"setMonitoringData": [monitor("Delta", 1)]})
    assert answer == {"error": "FormatViolation"}
    # The cap: 120 distinct monitors (numeric variables x severities 0-9) are offered.
    accepted = 0
    numeric = [
        "HeartbeatInterval",
        "OfflineThreshold",
        "ResetRetries",
        "RetryBackOffWaitMinimum",
        "RetryBackOffRandomRange",
        "RetryBackOffRepeatTimes",
        "NetworkProfileConnectionAttempts",
        "WebSocketPingInterval",
    ]
    entries = [
        monitor("Periodic", 60, component=COMM, variable={"name": name}, severity=s)
        for name in numeric
        for s in range(10)
    ] + [
        monitor(kind, 60, component={"name": "EVSE", "evse": {"id": e}}, severity=s)
        for e in (1, 2)
        for kind in ("Periodic", "Delta")
        for s in range(10)
    ]
    for start in range(0, len(entries), 20):
        results = csms.set_monitors(*entries[start : start + 20])
        accepted += sum(r["status"] == "Accepted" for r in results)
        refused = [r for r in results if r["status"] == "Rejected"]
        assert all(r["statusInfo"]["reasonCode"] == "TooManyMonitors" for r in refused)
    assert len(entries) > MAX_MONITORS
    assert accepted == MAX_MONITORS


def test_n04_monitors_survive_a_restart() -> None:
    """N04: custom monitors are kept in the state file: after a restart the report
    still lists them, and new ones get fresh ids."""
    store = FakeStore()
    csms = Csms(store=store)
    csms.set_monitors(monitor("UpperThreshold", 10000), monitor("Periodic", 60))
    after = Csms(store=store)
    after.call("GetMonitoringReport", {"requestId": 2})
    listed = [m["id"] for d in after.reports[0]["monitor"] for m in d["variableMonitoring"]]
    assert sorted(listed) == [1, 2]
    [result] = after.set_monitors(monitor("Delta", 100))
    assert result["id"] == 3


@VERSIONS
def test_n02_report_criteria_and_component_variable_filters(version: ProtocolVersion) -> None:
    """N02: 1-2 three monitors (threshold, Delta, Periodic); GetMonitoringReport with
    monitoringCriteria DeltaMonitoring: only the Delta one; with componentVariable
    EVSE 1 without variable (N02.FR.16): both EVSE 1 monitors; for a variable without
    monitors: EmptyResultSet and no NotifyMonitoringReport."""
    csms = Csms(version)
    csms.set_monitors(
        monitor("UpperThreshold", 10000),
        monitor("Delta", 500),
        monitor("Periodic", 300, component=COMM),
    )

    def report(payload: dict[str, Any]) -> list[tuple[str, str]]:
        csms.reports.clear()
        assert csms.call("GetMonitoringReport", {"requestId": 3, **payload}) == {
            "status": "Accepted"
        }
        return [
            (d["component"]["name"], m["type"])
            for r in csms.reports
            for d in r["monitor"]
            for m in d["variableMonitoring"]
        ]

    assert report({"monitoringCriteria": ["DeltaMonitoring"]}) == [("EVSE", "Delta")]
    assert report({"monitoringCriteria": ["PeriodicMonitoring", "ThresholdMonitoring"]}) == [
        ("EVSE", "UpperThreshold"),
        ("OCPPCommCtrlr", "Periodic"),
    ]
    assert sorted(report({"componentVariable": [{"component": EVSE1}]})) == [
        ("EVSE", "Delta"),
        ("EVSE", "UpperThreshold"),
    ]
    csms.reports.clear()
    empty = {"requestId": 4, "componentVariable": [{"component": COMM, "variable": POWER}]}
    assert csms.call("GetMonitoringReport", empty) == {"status": "EmptyResultSet"}
    assert csms.reports == []


def test_n02_long_reports_are_split() -> None:
    """N02: NotifyMonitoringReport parts hold at most DeviceDataCtrlr ItemsPerMessage
    GetReport entries, seqNo 0, 1, 2, tbc true on all but the last."""
    csms = Csms(**{"DeviceDataCtrlr.ItemsPerMessage[GetReport]": "2"})
    names = ["HeartbeatInterval", "OfflineThreshold", "ResetRetries", "RetryBackOffRepeatTimes"]
    csms.set_monitors(
        *[monitor("Delta", 1, component=COMM, variable={"name": n}) for n in names],
        monitor("Delta", 1),
    )
    assert csms.call("GetMonitoringReport", {"requestId": 5}) == {"status": "Accepted"}
    assert [(r["seqNo"], r["tbc"], len(r["monitor"])) for r in csms.reports] == [
        (0, True, 2),
        (1, True, 2),
        (2, False, 1),
    ]


# ------------------------------------------------------------ N06 / N03 / N05
def test_n06_clear_variable_monitoring() -> None:
    """N06: ClearVariableMonitoring of an installed id -> Accepted (it is gone from
    the report), of an unknown id -> NotFound; more ids than ItemsPerMessage
    ClearVariableMonitoring -> CALLERROR OccurrenceConstraintViolation."""
    csms = Csms()
    [result] = csms.set_monitors(monitor("UpperThreshold", 10000))
    answer = csms.call("ClearVariableMonitoring", {"id": [result["id"], 42]})
    assert answer == {
        "clearMonitoringResult": [
            {"id": result["id"], "status": "Accepted"},
            {"id": 42, "status": "NotFound"},
        ]
    }
    assert csms.call("GetMonitoringReport", {"requestId": 1}) == {"status": "EmptyResultSet"}
    answer = csms.call("ClearVariableMonitoring", {"id": list(range(21))})
    assert answer == {"error": "OccurrenceConstraintViolation"}


@pytest.mark.parametrize("base", ["All", "FactoryDefault", "HardWiredOnly"])
def test_n03_set_monitoring_base(base: str) -> None:
    """N03: SetMonitoringBase -> Accepted and MonitoringCtrlr.ActiveMonitoringBase
    shows it; All keeps the custom monitors, FactoryDefault and HardWiredOnly remove
    them (this station has no hard-wired or preconfigured ones)."""
    csms = Csms()
    csms.set_monitors(monitor("UpperThreshold", 10000))
    assert csms.call("SetMonitoringBase", {"monitoringBase": base}) == {"status": "Accepted"}
    got = csms.call(
        "GetVariables",
        {
            "getVariableData": [
                {
                    "component": {"name": "MonitoringCtrlr"},
                    "variable": {"name": "ActiveMonitoringBase"},
                }
            ]
        },
    )
    assert got["getVariableResult"][0]["attributeValue"] == base
    status = csms.call("GetMonitoringReport", {"requestId": 1})["status"]
    assert status == ("Accepted" if base == "All" else "EmptyResultSet")


def test_n05_set_monitoring_level_filters_events() -> None:
    """N05: SetMonitoringLevel 10 -> Rejected; 3 -> Accepted; then a severity-5
    threshold passing reports nothing and a severity-2 one does."""
    csms = Csms()
    assert csms.call("SetMonitoringLevel", {"severity": 10})["status"] == "Rejected"
    assert csms.call("SetMonitoringLevel", {"severity": 3}) == {"status": "Accepted"}
    csms.set_monitors(
        monitor("UpperThreshold", 10000, severity=5),
        monitor("UpperThreshold", 11000, severity=2),
    )
    csms.event(sample(power_w=12000))
    [data] = csms.event_data()
    assert data["variableMonitoringId"] == 2


# ------------------------------------------------------------------ N07 / N08
@VERSIONS
def test_n07_upper_threshold_alert_and_clear(version: ProtocolVersion) -> None:
    """N07: UpperThreshold 10000 W on EVSE 1 Power; the meter reads 12000 W ->
    NotifyEvent trigger Alerting, cleared false, actualValue 12000,
    CustomMonitor, variableMonitoringId; 12500 W -> nothing more; 8000 W ->
    Alerting with cleared true."""
    csms = Csms(version)
    [result] = csms.set_monitors(monitor("UpperThreshold", 10000, severity=4))
    csms.event(sample(power_w=12000))
    [raised] = csms.event_data()
    assert (
        raised.items()
        >= {
            "trigger": "Alerting",
            "cleared": False,
            "actualValue": "12000",
            "eventNotificationType": "CustomMonitor",
            "variableMonitoringId": result["id"],
            "component": EVSE1,
            "variable": POWER,
        }.items()
    )
    assert ("severity" in raised) is (version is V21)
    csms.event(sample(power_w=12500))
    assert csms.event_data() == []
    csms.event(sample(power_w=8000))
    [cleared] = csms.event_data()
    assert (cleared["trigger"], cleared["cleared"], cleared["actualValue"]) == (
        "Alerting",
        True,
        "8000",
    )
    assert cleared["eventId"] != raised["eventId"]


def test_n07_lower_threshold_on_a_value_the_csms_sets() -> None:
    """N07: LowerThreshold 100 s on HeartbeatInterval; SetVariables 50 -> the
    SetVariablesResponse, then NotifyEvent Alerting actualValue 50."""
    csms = Csms()
    csms.set_monitors(monitor("LowerThreshold", 100, component=COMM))
    answer = csms.call(
        "SetVariables",
        {"setVariableData": [{"component": COMM, "variable": HEARTBEAT, "attributeValue": "50"}]},
    )
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    [data] = csms.event_data()
    assert (data["trigger"], data["actualValue"], data["cleared"]) == ("Alerting", "50", False)


def test_n07_a_threshold_already_passed_is_reported_when_set() -> None:
    """N07.FR.11: a new (or replaced) threshold monitor starts from the current
    value: EVSE 1 at 7000 W, LowerThreshold 8000 -> an Alerting event at once."""
    csms = Csms()
    csms.event(sample(power_w=7000))
    csms.set_monitors(monitor("LowerThreshold", 8000))
    [data] = csms.event_data()
    assert (data["actualValue"], data["cleared"]) == ("7000", False)


def test_n07_delta_on_numbers_and_on_other_values() -> None:
    """N07.FR.18: Delta 1000 W on EVSE 1 Power from 7000 W: 7500 -> nothing, 8100 ->
    NotifyEvent trigger Delta (no cleared), 8600 -> nothing (measured from 8100).
    N07.FR.19: Delta on Connector AvailabilityState: every change is reported."""
    csms = Csms()
    csms.event(sample(power_w=7000))
    connector = {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}
    csms.set_monitors(
        monitor("Delta", 1000),
        monitor("Delta", 0, component=connector, variable={"name": "AvailabilityState"}),
    )
    csms.event(sample(power_w=7500))
    assert csms.event_data() == []
    csms.event(sample(power_w=8100))
    [data] = csms.event_data()
    assert (data["trigger"], data["actualValue"]) == ("Delta", "8100")
    assert "cleared" not in data
    csms.event(sample(power_w=8600))
    assert csms.event_data() == []
    csms.event(ConnectorStatusChanged(1, 1, ConnectorStatus.OCCUPIED))
    [data] = csms.event_data()
    assert (data["component"], data["actualValue"]) == (connector, "Occupied")


def test_n07_transaction_monitor_watches_only_during_a_transaction() -> None:
    """N04/N07: a monitor with transaction true on EVSE 1 Power: no event without a
    transaction; during one the event carries the transactionId."""
    csms = Csms()
    csms.set_monitors(monitor("UpperThreshold", 10000, transaction=True))
    csms.event(sample(power_w=12000))
    csms.event(sample(power_w=7000))
    assert csms.event_data() == []
    csms.event(SessionStarted(1, 1, IdToken("04A2B3C4"), sample(power_w=7000)))
    csms.event(sample(power_w=12000))
    [data] = csms.event_data()
    [started] = [f[3] for f in calls(csms.h.sent, "TransactionEvent") if f[3]["seqNo"] == 0]
    assert data["transactionId"] == started["transactionInfo"]["transactionId"]
    csms.event(SessionEnded(1, StoppedReason.EV_DISCONNECTED, sample(power_w=0)))


def test_n07_offline_queuing_severity() -> None:
    """N07: offline, an event with a severity up to OfflineQueuingSeverity (4) is
    queued durably and sent after the reconnect; a severity-7 one is dropped."""
    csms = Csms()
    csms.set_monitors(
        monitor("UpperThreshold", 10000, severity=3),
        monitor("UpperThreshold", 10000, severity=7),
    )
    csms.h.station.connection_lost(csms.h.now, "test")
    csms.event(sample(power_w=12000))
    queued = [m for m in csms.h.store.queue.values() if m.action == "NotifyEvent"]
    assert [m.payload["eventData"][0]["variableMonitoringId"] for m in queued] == [1]
    csms.answer(csms.h.connect())
    csms.advance(1)
    [data] = csms.event_data()
    assert (data["variableMonitoringId"], data["actualValue"]) == (1, "12000")


def test_n08_periodic_monitor() -> None:
    """N08: Periodic 60 s on EVSE 1 Power: a NotifyEvent trigger Periodic with the
    current value 60 s after it was set and every 60 s after."""
    csms = Csms()
    csms.event(sample(power_w=7000))
    set_at = csms.h.now
    csms.set_monitors(monitor("Periodic", 60))
    csms.advance(59)
    assert csms.event_data() == []
    csms.advance(1)
    csms.event(sample(power_w=6000))
    csms.advance(60)
    events = csms.event_data()
    assert [(e["trigger"], e["actualValue"]) for e in events] == [
        ("Periodic", "7000"),
        ("Periodic", "6000"),
    ]
    times = [parse_timestamp(e["timestamp"]) for e in events]
    assert [round(t - times[0]) for t in times] == [0, 60]
    assert math.isclose(times[0] - set_at, csms.h.station.utc_offset_s + 60, abs_tol=1)


def test_n08_periodic_clock_aligned_monitor() -> None:
    """N08: PeriodicClockAligned 900 s: events at the UTC quarter hours."""
    csms = Csms()
    csms.set_monitors(monitor("PeriodicClockAligned", 900, component=COMM))
    csms.advance(1900)
    events = csms.event_data()
    assert len(events) == 2
    assert all(parse_timestamp(e["timestamp"]) % 900 < 1 for e in events)
    assert all(e["trigger"] == "Periodic" and e["actualValue"] == "300" for e in events)


def test_monitoring_disabled_reports_nothing() -> None:
    """MonitoringCtrlr.Enabled false: monitors stay installed but raise no event."""
    csms = Csms(**{"MonitoringCtrlr.Enabled": "false"})
    [result] = csms.set_monitors(monitor("UpperThreshold", 10000))
    assert result["status"] == "Accepted"
    csms.event(sample(power_w=12000))
    assert csms.event_data() == []
    assert calls(csms.h.sent, "NotifyEvent") == []
