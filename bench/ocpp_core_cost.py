"""Cost of the sans-I/O OCPP core per meter interval, with and without schema validation.

Run by hand:  python bench/ocpp_core_cost.py [rounds]

Each round is what a busy station sees in one meter interval: a MeterSample
that yields a TransactionEvent (CALL out, CALLRESULT in) and a GetVariables of
ten entries from the CSMS (CALL in, CALLRESULT out).  Timed three times: with the
OCA JSON schemas from the `ocpp` package on everything (the default), on the
CSMS's messages only, and not at all, to show what validation costs.  Prints medians
and the ratio.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chargepoint.adapters.ocpp_client import OcppSchemas
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.rpc import JsonObject, ProtocolVersion
from chargepoint.ocpp.station import (
    OcppStation,
    SchemaProblem,
    SendFrame,
    StationIdentity,
)
from chargepoint.ocpp.station_io import IdToken, MeterSample, SessionStarted

IDENTITY = StationIdentity("OpenV2G", "BiDi-11", {1: 1})
GET_VARIABLES = json.dumps(
    [
        2,
        "gv",
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            ]
            * 10
        },
    ]
)


class NoSchemas:
    """Accepts everything; knows the actions the real catalogue knows."""

    def __init__(self) -> None:
        self._real = OcppSchemas()

    def known_actions(self, version: ProtocolVersion) -> frozenset[str]:
        return self._real.known_actions(version)

    def check(
        self,
        version: ProtocolVersion,
        action: str,
        payload: JsonObject,
        *,
        request: bool,
        own: bool = False,
    ) -> SchemaProblem | None:
        return None


def sent_calls(station: OcppStation) -> list[list[Any]]:
    frames = [json.loads(a.text) for a in station.actions() if isinstance(a, SendFrame)]
    return [f for f in frames if f[0] == 2]


def accepted_station(schemas: OcppSchemas | NoSchemas) -> tuple[OcppStation, float]:
    ids = itertools.count()
    specs = dm.standard_variables(
        identity="BENCH", security_profile=1, basic_auth_password=None, evse_connectors={1: 1}
    )
    model = dm.DeviceModel(specs, {})
    model.update(dm.SAMPLED_DATA, dm.TX_UPDATED_INTERVAL, "1")
    station = OcppStation(
        identity=IDENTITY,
        model=model,
        schemas=schemas,
        rng=random.Random(0),
        new_id=lambda: f"m{next(ids)}",
        utc_offset_s=1.7e9,
    )
    now = 0.0
    station.start(now)
    station.actions()
    station.connection_opened(now, ProtocolVersion.V201)
    pending = sent_calls(station)
    while pending:  # boot, then the status notifications
        frame = pending.pop(0)
        answer = (
            {"currentTime": "2026-01-01T00:00:00.000Z", "interval": 300, "status": "Accepted"}
            if frame[2] == "BootNotification"
            else {}
        )
        station.receive_frame(now, json.dumps([3, frame[1], answer]))
        pending += sent_calls(station)
    sample = MeterSample(1, 0, 0, 7000, 230, 30, 50)
    station.station_event(now, SessionStarted(1, 1, IdToken("TAG"), sample))
    for frame in sent_calls(station):
        station.receive_frame(now, json.dumps([3, frame[1], {}]))
    return station, now


def run(schemas: OcppSchemas | NoSchemas, rounds: int) -> list[float]:
    station, now = accepted_station(schemas)
    durations = []
    for i in range(rounds):
        now += 1.0
        start = time.perf_counter()
        station.station_event(now, MeterSample(1, 1000.0 + i, 0, 7000, 230, 30, 50))
        for frame in sent_calls(station):
            station.receive_frame(now, json.dumps([3, frame[1], {}]))
        station.receive_frame(now, GET_VARIABLES)
        station.actions()
        durations.append(time.perf_counter() - start)
    return durations


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    full = statistics.median(run(OcppSchemas(), rounds)) * 1e6
    peer_only = statistics.median(run(OcppSchemas(validate_own=False), rounds)) * 1e6
    without = statistics.median(run(NoSchemas(), rounds)) * 1e6
    print(f"rounds: {rounds} (TransactionEvent out + GetVariables x10 in, per round)")
    print(f"median per round, all messages validated : {full:8.1f} us")
    print(f"median per round, CSMS messages only     : {peer_only:8.1f} us")
    print(f"median per round, no validation          : {without:8.1f} us")
    print(f"ratio all / none                          : {full / without:8.2f}")
    print(f"ratio CSMS-only / none                    : {peer_only / without:8.2f}")


if __name__ == "__main__":
    main()
