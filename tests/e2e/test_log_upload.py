"""GetLog end to end (OCPP N01): the whole station on simulated hardware, a CSMS, and
an HTTP server on 127.0.0.1 that receives the log the station uploads."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
import threading
import zipfile
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call_result

from chargepoint.adapters.log_upload import LogFiles, upload
from chargepoint.app import Station
from chargepoint.config import parse_config
from chargepoint.ocpp.station_io import RecordSecurityEvent
from tests.e2e.conftest import stop_station
from tests.e2e.test_ocpp_station import csms_config
from tests.ocpp.csms import Csms


class LogServer:
    """Records uploads; answers each request with the next status of ``answers``
    (then 201), or 405 to every PUT when ``post_only``."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, str, str, bytes]] = []  # method, path, type, body
        self.answers: list[int] = []
        self.post_only = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _receive(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kind = self.headers.get("Content-Type", "")
                server.uploads.append((self.command, self.path, kind, body))
                if self.command == "PUT" and server.post_only:
                    code = 405
                else:
                    code = server.answers.pop(0) if server.answers else 201
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _receive  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/logs/"

    def __enter__(self) -> LogServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def log_server() -> Iterator[LogServer]:
    with LogServer() as server:
        yield server


@pytest.fixture
async def station(tmp_path: Path, csms: Csms) -> AsyncIterator[Station]:
    st = Station(parse_config(csms_config(tmp_path, csms.port), "test"))
    task = asyncio.create_task(st.run())
    await asyncio.wait_for(st.ready.wait(), 15)
    await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 10)
    # The package's CSMS has no handlers for these two: answer them as a CSMS does.
    csms.cp.route_map["LogStatusNotification"] = {
        "_on_action": lambda **kw: call_result.LogStatusNotification()
    }
    yield st
    await stop_station(st, task)


def statuses(csms: Csms) -> list[tuple[str, int | None]]:
    return [(f[3]["status"], f[3].get("requestId")) for f in csms.received("LogStatusNotification")]


async def get_log(csms: Csms, uid: str, **payload: Any) -> dict[str, Any]:
    answer = await csms.raw_call(json.dumps([2, uid, "GetLog", payload]), uid)
    assert answer[0] == 3, answer
    result: dict[str, Any] = answer[2]
    return result


def unzip(body: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist()}


async def test_tc_n_25_diagnostics_log_is_uploaded_over_http(
    station: Station, csms: Csms, log_server: LogServer, caplog: pytest.LogCaptureFixture
) -> None:
    """TC_N_25_CS: GetLog DiagnosticsLog -> Accepted with a filename; Uploading;
    the file arrives at the server (HTTP PUT, a zip of the service's own log,
    secrets redacted); Uploaded."""
    caplog.set_level(logging.INFO)  # as `chargepoint run` sets the root logger
    logging.getLogger("test").info("header Authorization: Basic c2VjcmV0")
    answer = await get_log(
        csms, "g1", logType="DiagnosticsLog", requestId=5, log={"remoteLocation": log_server.url}
    )
    assert answer["status"] == "Accepted"
    await csms.until(lambda: ("Uploaded", 5) in statuses(csms), within_s=10)
    assert statuses(csms) == [("Uploading", 5), ("Uploaded", 5)]
    [(method, path, kind, body)] = log_server.uploads
    assert (method, path, kind) == ("PUT", f"/logs/{answer['filename']}", "application/zip")
    log = unzip(body)["diagnostics.log"]
    assert "UploadLog(request_id=5" in log  # the service's own INFO lines
    assert "Authorization: Basic [redacted]" in log and "c2VjcmV0" not in log
    mode = (station.logs.directory / "diagnostics.log").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


async def test_tc_n_26_failed_upload_is_retried_then_reported(
    station: Station, csms: Csms, log_server: LogServer
) -> None:
    """TC_N_26_CS: GetLog with retries 2 and retryInterval 1 to a server that keeps
    failing: three attempts, Uploading once, then UploadFailure."""
    log_server.answers = [500, 500, 500]
    await get_log(
        csms,
        "g1",
        logType="DiagnosticsLog",
        requestId=6,
        log={"remoteLocation": log_server.url},
        retries=2,
        retryInterval=1,
    )
    await csms.until(lambda: ("UploadFailure", 6) in statuses(csms), within_s=15)
    assert statuses(csms) == [("Uploading", 6), ("UploadFailure", 6)]
    assert len(log_server.uploads) == 3


async def test_tc_n_35_security_log_is_kept_and_uploaded(
    station: Station, csms: Csms, log_server: LogServer
) -> None:
    """TC_N_35_CS: a security event (a CertificateSigned the station refuses) is
    reported to the CSMS and written to the station's security log (0600); GetLog
    SecurityLog uploads it (here to a server that only takes POST multipart)."""
    answer = await csms.raw_call(
        '[2, "cs", "CertificateSigned", {"certificateChain": "not a certificate"}]', "cs"
    )
    assert answer[2]["status"] == "Rejected"
    await csms.until(lambda: csms.received("SecurityEventNotification"), within_s=10)
    security_log = station.logs.directory / "security.log"
    for _ in range(200):  # written by a worker thread: wait for the line itself
        if security_log.exists() and "InvalidCharging" in security_log.read_text():
            break
        await asyncio.sleep(0.05)
    assert stat.S_IMODE(security_log.stat().st_mode) == 0o600
    assert " InvalidChargingStationCertificate " in security_log.read_text()
    log_server.post_only = True
    answer = await get_log(
        csms, "g2", logType="SecurityLog", requestId=7, log={"remoteLocation": log_server.url}
    )
    await csms.until(lambda: ("Uploaded", 7) in statuses(csms), within_s=10)
    assert statuses(csms) == [("Uploading", 7), ("Uploaded", 7)]
    [put, post] = log_server.uploads
    assert (put[0], post[0]) == ("PUT", "POST")
    assert post[2].startswith("multipart/form-data; boundary=")
    assert answer["filename"].encode() in post[3]
    part = post[3][post[3].index(b"\r\n\r\n") + 4 : post[3].rindex(b"\r\n--")]
    assert " InvalidChargingStationCertificate " in unzip(part)["security.log"]


async def test_ftp_is_answered_with_upload_failure(station: Station, csms: Csms) -> None:
    """FTP is not supported: the upload ends in UploadFailure at once."""
    await get_log(
        csms,
        "g1",
        logType="DiagnosticsLog",
        requestId=8,
        log={"remoteLocation": "ftp://127.0.0.1/logs/"},
        retries=0,
    )
    await csms.until(lambda: ("UploadFailure", 8) in statuses(csms), within_s=10)
    assert statuses(csms) == [("Uploading", 8), ("UploadFailure", 8)]


def test_collect_keeps_the_requested_period_across_rotation(tmp_path: Path) -> None:
    """N01 oldestTimestamp/latestTimestamp: lines outside are left out; a line
    without a timestamp goes with the one before; the rotated copy comes first."""
    logs = LogFiles(tmp_path, 10_000)
    (tmp_path / "diagnostics.log.1").write_text("2026-01-01T00:00:00.000Z INFO a: old\n")
    (tmp_path / "diagnostics.log").write_text(
        "2026-01-01T01:00:00.000Z ERROR a: in\nTraceback (continued)\n"
        "2026-01-01T03:00:00.000Z INFO a: late\n"
    )
    everything = unzip(logs.collect("DiagnosticsLog", None, None))["diagnostics.log"]
    assert everything.splitlines()[0].endswith("old") and "late" in everything
    start, end = 1767229200.0 - 60, 1767229200.0 + 60  # around 01:00
    window = unzip(logs.collect("DiagnosticsLog", start, end))["diagnostics.log"]
    assert window == "2026-01-01T01:00:00.000Z ERROR a: in\nTraceback (continued)\n"


def test_security_log_is_bounded(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path, 200)
    for n in range(20):
        logs.record_security_event(RecordSecurityEvent("ResetOrReboot", f"2026-{n:02d}", "x\ny"))
    assert (tmp_path / "security.log").stat().st_size <= 200
    assert (tmp_path / "security.log.1").stat().st_size <= 200
    assert "ResetOrReboot x y\n" in (tmp_path / "security.log").read_text()


def test_upload_answers_map_to_log_statuses(log_server: LogServer) -> None:
    """HTTP 403 is PermissionDenied; user info in the location becomes Basic auth
    (and is never part of the request line)."""
    log_server.answers = [403]
    assert upload(log_server.url, "f.zip", b"z") == "PermissionDenied"
    url = log_server.url.replace("http://", "http://ops:s3cret@")
    assert upload(url + "named.zip", "f.zip", b"z") == "Uploaded"
    assert log_server.uploads[-1][1] == "/logs/named.zip"
    assert upload("http://127.0.0.1:9/x", "f.zip", b"z", timeout_s=2) == "UploadFailure"
