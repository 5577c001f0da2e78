"""Offline backlog replay: N queued TransactionEvents delivered after reconnect.

The station's durable queue (SQLite, WAL, fsync on commit) is filled with N
TransactionEvents of one transaction (Started, N-2 Updated with meter values,
Ended, all ``offline: true``), as after a long CSMS outage. Then the real
OCPP client starts against a local CSMS (websockets on 127.0.0.1) that answers
every CALL at once. The bench times the replay, and checks that every seqNo
arrived exactly once and in order.

    python bench/ocpp_replay.py [N=10000] [--no-validation]

Target (issue 4): >= 300 messages/s with schema validation on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chargepoint.adapters.ocpp_client import OcppClient, OcppClientSettings
from chargepoint.adapters.ocpp_store import OcppStore
from chargepoint.ocpp.queue import MessageKind, QueuedMessage
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station import StationIdentity
from chargepoint.ocpp.station_io import StationCommand

TX_ID = "bench-transaction-0001"


def meter_value(ts: str, wh: float, context: str) -> list[dict[str, Any]]:
    def sv(value: float, measurand: str, unit: str) -> dict[str, Any]:
        return {
            "value": value,
            "context": context,
            "measurand": measurand,
            "unitOfMeasure": {"unit": unit},
        }

    return [
        {
            "timestamp": ts,
            "sampledValue": [
                sv(wh, "Energy.Active.Import.Register", "Wh"),
                sv(0.0, "Energy.Active.Export.Register", "Wh"),
                sv(11000.0, "Power.Active.Import", "W"),
                sv(230.0, "Voltage", "V"),
                sv(16.0, "Current.Import", "A"),
            ],
        }
    ]


def event(seq: int, n: int) -> QueuedMessage:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_760_000_000 + seq)) + ".000Z"
    kind = "Started" if seq == 0 else "Ended" if seq == n - 1 else "Updated"
    payload: dict[str, Any] = {
        "eventType": kind,
        "timestamp": ts,
        "triggerReason": {
            "Started": "CablePluggedIn",
            "Updated": "MeterValuePeriodic",
            "Ended": "EVCommunicationLost",
        }[kind],
        "seqNo": seq,
        "transactionInfo": {"transactionId": TX_ID},
        "offline": True,
        "meterValue": meter_value(
            ts,
            3.05 * seq,
            {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
                kind, "Sample.Periodic"
            ),
        ),
    }
    if kind == "Started":
        payload["evse"] = {"id": 1, "connectorId": 1}
    if kind == "Ended":
        payload["transactionInfo"]["stoppedReason"] = "EVDisconnected"
    message_kind = MessageKind.TX_UPDATE if kind == "Updated" else MessageKind.TX_BOUNDARY
    return QueuedMessage(seq + 1, "TransactionEvent", payload, message_kind)


class Csms:
    """Answers BootNotification with Accepted and every other CALL with {}."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seq_nos: list[int] = []
        self.first_at: float | None = None
        self.done = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        async for text in ws:
            msg = json.loads(text)
            if msg[0] != 2:
                continue
            action, payload = msg[2], msg[3]
            if action == "BootNotification":
                answer: dict[str, Any] = {
                    "currentTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "interval": 300,
                    "status": "Accepted",
                }
            else:
                answer = {}
            if action == "TransactionEvent":
                if self.first_at is None:
                    self.first_at = time.perf_counter()
                self.seq_nos.append(payload["seqNo"])
                if len(self.seq_nos) >= self.n:
                    self.done.set()
            await ws.send(json.dumps([3, msg[1], answer]))


async def main_async(n: int, validate: bool) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="chargepoint-replay-"))
    state = tmp / "ocpp.sqlite3"
    t0 = time.perf_counter()
    with OcppStore(state) as store:
        for seq in range(n):
            store.save_queued(event(seq, n))
    fill_s = time.perf_counter() - t0
    csms = Csms(n)
    async with serve(csms.handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        settings = OcppClientSettings(
            csms_url=f"ws://127.0.0.1:{port}/ocpp",
            identity="BENCH-REPLAY",
            station=StationIdentity("bench", "replay", {1: 1}),
            state_file=state,
            basic_auth_password="bench-password-0123",
            subprotocols=(ProtocolVersion.V201,),
            queue_capacity=n + 100,
            validate_own_messages=validate,
        )
        commands: asyncio.Queue[StationCommand] = asyncio.Queue()
        client = OcppClient(settings, commands)
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(csms.done.wait(), timeout=max(120.0, n / 50))
        finally:
            client.stop()
            await asyncio.wait_for(task, 30)
    end = time.perf_counter()
    assert csms.first_at is not None
    elapsed = end - csms.first_at
    received = csms.seq_nos
    lost = sorted(set(range(n)) - set(received))
    in_order = received == sorted(received)
    duplicates = len(received) - len(set(received))
    with OcppStore(state) as store:
        left = len(store.load_queue())
    print(f"queued {n} TransactionEvents in {fill_s:.1f} s (durable store, fsync per commit)")
    print(
        f"replayed after reconnect: {len(received)} received in {elapsed:.2f} s -> "
        f"{len(received) / elapsed:.0f} messages/s (schema validation "
        f"{'on: ours and the CSMS answers' if validate else 'on CSMS answers only'})"
    )
    print(
        f"lost: {len(lost)}, duplicates: {duplicates}, in seqNo order: {in_order}, "
        f"left in queue: {left}"
    )
    rate = len(received) / elapsed
    print(f"target >= 300 messages/s: {'met' if rate >= 300 else 'NOT met'} ({rate / 300:.2f}x)")
    return 0 if not lost and in_order else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--no-validation", action="store_true")
    args = parser.parse_args()
    return asyncio.run(main_async(args.n, not args.no_validation))


if __name__ == "__main__":
    sys.exit(main())
