"""No secret in any log line of a whole session at DEBUG (issue 10 item 8).

The service logs exactly as ``chargepoint run`` sets it up (``setup_logging``,
DEBUG, the redacting handler filter) while a session is charged and reported to
a CSMS over OCPP with basic auth; then every line is searched for the password,
its base64 form in the Authorization header, and private-key material.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargepoint.adapters.log_redaction import redact
from chargepoint.app import Station
from chargepoint.cli import setup_logging
from chargepoint.config import parse_config
from tests.e2e.conftest import Client
from tests.e2e.test_ocpp_station import csms_config
from tests.ocpp.csms import Csms

PASSWORD = "correct-horse-battery"


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    setup_logging("DEBUG", "text", stream)
    # setup_logging keeps websockets at INFO (its per-frame DEBUG stalls the loop under
    # a flood); an operator may still turn it up: then its handshake log shows too.
    ws_logger = logging.getLogger("websockets")
    ws_level = ws_logger.level
    ws_logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        ws_logger.setLevel(ws_level)


async def test_a_debug_session_logs_no_secret(tmp_path: Path, debug_log: io.StringIO) -> None:
    async with Csms() as csms:
        config = parse_config(csms_config(tmp_path, csms.port), "test")
        station = Station(config)
        task = asyncio.create_task(station.run())
        try:
            await asyncio.wait_for(station.ready.wait(), 15)
            await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
            client = Client(station)
            await client.sim("plug")
            await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
            await csms.until(lambda: csms.received("TransactionEvent"), within_s=10)
            await client.sim("unplug")
            await client.wait_for(lambda s: s["state"] == "idle")
        finally:
            station.stop()
            await asyncio.wait({task}, timeout=15)
    text = debug_log.getvalue()
    token = base64.b64encode(f"{config.station.id}:{PASSWORD}".encode()).decode()
    assert "DEBUG" in text and "TransactionEvent" in text  # it did log, verbosely
    assert PASSWORD not in text
    assert token not in text
    assert "PRIVATE KEY-----" not in text
    assert "Authorization: Basic [redacted]" in text  # the handshake was logged, redacted


def test_redaction_of_headers_and_keys() -> None:
    assert redact("> Authorization: Basic QUJDOmRlZg==") == "> Authorization: Basic [redacted]"
    assert "dGVzdA" not in redact("('Authorization', 'Bearer dGVzdA')")
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"
    assert redact(f"key: {pem} done") == "key: [private key redacted] done"
    assert redact("nothing secret here") == "nothing secret here"
    # a CSMS may put credentials in a GetLog / UpdateFirmware location
    frame = '[2,"1","GetLog",{"log":{"remoteLocation":"https://ops:s3cret@logs.example/up"}}]'
    assert "s3cret" not in redact(frame) and "https://ops:[redacted]@logs" in redact(frame)
    assert redact("https://logs.example/a:b") == "https://logs.example/a:b"
