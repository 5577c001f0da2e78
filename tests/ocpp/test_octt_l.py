"""Secure firmware update (OCPP 2.0.1 L01) in the sans-I/O core, as the OCTT drives it.

The test plays the CSMS and the runtime: it answers the station's CALLs and
feeds :class:`FirmwareProgress` where the runtime would report download,
signature check and install.  The signing certificate check is a fake
:class:`SigningCheck` (the real one is tested in tests/e2e/test_firmware_update.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station_io import (
    CancelFirmware,
    ConnectorStatus,
    ConnectorStatusChanged,
    DownloadFirmware,
    FirmwareProgress,
    InstallFirmware,
    RebootForFirmware,
    SessionEnded,
    SessionStarted,
    SetAvailability,
    StoppedReason,
)
from tests.ocpp import helpers
from tests.ocpp.helpers import FakeStore, Harness, boot_result, calls
from tests.ocpp.test_station import sample

NOW = "2026-01-01T00:00:10.000Z"  # the CSMS clock after the boot answer
TWO_HOURS_AGO = "2025-12-31T22:00:10.000Z"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class FakeSigning:
    """The manufacturer root: ``verdict`` for every certificate."""

    def __init__(self, verdict: str = "Accepted") -> None:
        self.verdict = verdict
        self.seen: list[str] = []

    def check_signing_certificate(self, pem: str) -> str:
        self.seen.append(pem)
        return self.verdict


def station(
    monkeypatch: pytest.MonkeyPatch,
    *,
    signing: FakeSigning | None = None,
    version: str = "0.1.0",
    store: FakeStore | None = None,
) -> Harness:
    """A harness whose station trusts ``signing`` and runs ``version``, booted."""
    identity = replace(
        helpers.IDENTITY,
        firmware_signing=signing if signing is not None else FakeSigning(),
        firmware_version=version,
    )
    monkeypatch.setattr(helpers, "IDENTITY", identity)
    h = Harness(store)
    reply(h, h.boot())
    return h


def answer(action: str) -> dict[str, Any]:
    if action == "BootNotification":
        return boot_result()
    if action == "Heartbeat":
        return {"currentTime": NOW}
    return {}


def reply(h: Harness, frames: list[Any]) -> list[Any]:
    """Answer every CALL (and what follows) like a CSMS; all the station sent."""
    seen: list[Any] = []
    pending = list(frames)
    while pending:
        frame = pending.pop(0)
        seen.append(frame)
        if frame[0] == 2:
            pending += h.reply(frame, answer(frame[2]))
    return seen


def update_firmware(h: Harness, request_id: int = 1, **firmware: Any) -> tuple[str, list[Any]]:
    body: dict[str, Any] = {
        "location": "https://fw.example/chargepoint-9.9.9.tar",
        "retrieveDateTime": TWO_HOURS_AGO,
        "signingCertificate": CERT,
        "signature": "c2lnbmF0dXJl",
    }
    body.update(firmware)
    body = {k: v for k, v in body.items() if v is not None}
    frames = h.receive(
        [2, f"u{request_id}", "UpdateFirmware", {"requestId": request_id, "firmware": body}]
    )
    assert frames[0][:2] == [3, f"u{request_id}"], frames
    status: str = frames[0][2]["status"]
    return status, reply(h, frames[1:])


def progress(h: Harness, status: str, request_id: int = 1, **extra: Any) -> list[Any]:
    h.station.station_event(h.now, FirmwareProgress(request_id, status, **extra))
    return reply(h, h.drain())


def commands(h: Harness) -> list[Any]:
    """The firmware commands the runtime got (other blocks give their own)."""
    kinds = (DownloadFirmware, InstallFirmware, CancelFirmware, RebootForFirmware)
    return [c for c in h.commands if isinstance(c, kinds)]


def firmware_statuses(frames: list[Any]) -> list[str]:
    return [f[3]["status"] for f in calls(frames, "FirmwareStatusNotification")]


def security_events(frames: list[Any]) -> list[str]:
    return [f[3]["type"] for f in calls(frames, "SecurityEventNotification")]


def download_and_verify(h: Harness, request_id: int = 1) -> list[Any]:
    frames = progress(h, "Downloaded", request_id, path="/tmp/fw.tar")
    return frames + progress(h, "SignatureVerified", request_id)


def test_tc_l_01_installation_successful(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_01_CS: UpdateFirmware (retrieveDateTime now - 2 h, signed) -> Accepted;
    FirmwareStatusNotification Downloading, Downloaded, SignatureVerified, Installing,
    InstallRebooting, all with the requestId; the station reboots; BootNotification
    (reason FirmwareUpdate) Accepted; then Installed (and SecurityEventNotification
    FirmwareUpdated)."""
    store = FakeStore()
    signing = FakeSigning()
    h = station(monkeypatch, signing=signing, store=store)
    status, frames = update_firmware(h, 7)
    assert status == "Accepted" and signing.seen == [CERT]
    assert commands(h) == [
        DownloadFirmware(7, "https://fw.example/chargepoint-9.9.9.tar", 3, 60, CERT, "c2lnbmF0dXJl")
    ]
    frames += download_and_verify(h, 7)
    assert commands(h)[-1] == InstallFirmware(7, "/tmp/fw.tar")
    frames += progress(h, "InstallRebooting", 7, version="9.9.9")
    assert commands(h)[-1] == RebootForFirmware(7)
    assert firmware_statuses(frames) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
    ]
    assert {f[3]["requestId"] for f in calls(frames, "FirmwareStatusNotification")} == {7}
    assert store.state["firmware"]["requestId"] == 7
    # the reboot: the new release runs version 9.9.9
    identity = replace(helpers.IDENTITY, firmware_version="9.9.9")
    monkeypatch.setattr(helpers, "IDENTITY", identity)
    again = Harness(store)
    assert again.station._firmware.firmware_status() == ("InstallRebooting", 7)
    boot = again.connect()
    assert boot[-1][2] == "BootNotification" and boot[-1][3]["reason"] == "FirmwareUpdate"
    after = reply(again, again.reply(boot[-1], boot_result()))
    assert firmware_statuses(after) == ["Installed"]
    assert calls(after, "FirmwareStatusNotification")[0][3]["requestId"] == 7
    assert "FirmwareUpdated" in security_events(after)
    assert store.state["firmware"] == {}
    # F06: no update going on any more
    assert again.station._firmware.firmware_status() == ("Idle", None)


def test_tc_l_02_install_scheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_02_CS: installDateTime in the future: Downloading, Downloaded,
    SignatureVerified, InstallScheduled; at installDateTime Installing."""
    h = station(monkeypatch)
    status, frames = update_firmware(h, 2, installDateTime="2026-01-01T01:00:10.000Z")
    assert status == "Accepted"
    frames += download_and_verify(h, 2)
    assert firmware_statuses(frames)[-1] == "InstallScheduled"
    assert not any(isinstance(c, InstallFirmware) for c in commands(h))
    frames += reply(h, h.advance(3600 - 60))
    assert firmware_statuses(frames)[-1] == "InstallScheduled"
    frames += reply(h, h.advance(120))
    assert firmware_statuses(frames) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallScheduled",
        "Installing",
    ]
    assert commands(h)[-1] == InstallFirmware(2, "/tmp/fw.tar")


def test_tc_l_03_download_scheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_03_CS: retrieveDateTime in the future: DownloadScheduled, then Downloading
    once it is reached (then as TC_L_01)."""
    h = station(monkeypatch)
    status, frames = update_firmware(h, 3, retrieveDateTime="2026-01-01T00:10:10.000Z")
    assert status == "Accepted"
    assert firmware_statuses(frames) == ["DownloadScheduled"]
    assert commands(h) == []
    frames += reply(h, h.advance(590))
    assert firmware_statuses(frames) == ["DownloadScheduled"]
    frames += reply(h, h.advance(20))
    assert firmware_statuses(frames) == ["DownloadScheduled", "Downloading"]
    assert isinstance(commands(h)[-1], DownloadFirmware)


def test_tc_l_04_revoked_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_04_CS: a revoked signing certificate: UpdateFirmwareResponse
    RevokedCertificate; nothing is downloaded."""
    h = station(monkeypatch, signing=FakeSigning("RevokedCertificate"))
    status, frames = update_firmware(h)
    assert status == "RevokedCertificate"
    assert commands(h) == [] and firmware_statuses(frames) == []
    assert security_events(frames) == ["InvalidFirmwareSigningCertificate"]


def test_tc_l_05_invalid_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_05_CS: a signing certificate that does not chain to the manufacturer root:
    InvalidCertificate, and SecurityEventNotification InvalidFirmwareSigningCertificate."""
    h = station(monkeypatch, signing=FakeSigning("InvalidCertificate"))
    status, frames = update_firmware(h)
    assert status == "InvalidCertificate"
    assert security_events(frames) == ["InvalidFirmwareSigningCertificate"]
    assert commands(h) == []


def test_no_manufacturer_root_configured_answers_invalid_certificate() -> None:
    """Without [csms] firmware_signing_root nothing can be trusted: InvalidCertificate."""
    h = Harness()
    reply(h, h.boot())
    status, _ = update_firmware(h)
    assert status == "InvalidCertificate"


def test_tc_l_06_invalid_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_06_CS: Downloading, Downloaded, InvalidSignature, and
    SecurityEventNotification InvalidFirmwareSignature; nothing is installed."""
    h = station(monkeypatch)
    _, frames = update_firmware(h, 6)
    frames += progress(h, "Downloaded", 6, path="/tmp/fw.tar")
    frames += progress(h, "InvalidSignature", 6, detail="signature does not verify")
    assert firmware_statuses(frames) == ["Downloading", "Downloaded", "InvalidSignature"]
    assert security_events(frames) == ["InvalidFirmwareSignature"]
    assert not any(isinstance(c, InstallFirmware) for c in commands(h))
    assert h.station._firmware.firmware_status() == ("Idle", None)


def test_tc_l_07_download_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_07_CS: a location that does not exist: (Downloading,) DownloadFailed; the
    runtime got the retries and their interval from the request."""
    h = station(monkeypatch)
    frames = h.receive(
        [
            2,
            "u",
            "UpdateFirmware",
            {
                "requestId": 9,
                "retries": 2,
                "retryInterval": 5,
                "firmware": {
                    "location": "https://fw.example/x_does_not_exist",
                    "retrieveDateTime": TWO_HOURS_AGO,
                    "installDateTime": TWO_HOURS_AGO,
                    "signingCertificate": CERT,
                    "signature": "c2ln",
                },
            },
        ]
    )
    frames = reply(h, frames)
    command = commands(h)[0]
    assert isinstance(command, DownloadFirmware)
    assert (command.retries, command.retry_interval_s) == (2, 5)
    frames += progress(h, "DownloadFailed", 9)
    assert firmware_statuses(frames) == ["Downloading", "DownloadFailed"]


@pytest.mark.parametrize("failure", ["InstallVerificationFailed", "InstallationFailed"])
def test_tc_l_08_install_verification_failed_or_installation_failed(
    monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """TC_L_08_CS: Downloading, Downloaded, SignatureVerified, Installing, then
    InstallVerificationFailed or InstallationFailed; no reboot."""
    h = station(monkeypatch)
    _, frames = update_firmware(h, 8)
    frames += download_and_verify(h, 8)
    frames += progress(h, failure, 8, detail="pip failed")
    assert firmware_statuses(frames) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        failure,
    ]
    assert not any(isinstance(c, RebootForFirmware) for c in commands(h))


def test_tc_l_10_accepted_canceled(monkeypatch: pytest.MonkeyPatch) -> None:
    """TC_L_10_CS: a second UpdateFirmware while the first downloads: AcceptedCanceled
    (L01.FR.24), the first download is cancelled, the second starts (Downloading with
    the new requestId); late progress of the first is ignored."""
    h = station(monkeypatch)
    update_firmware(h, 1)
    status, frames = update_firmware(h, 2)
    assert status == "AcceptedCanceled"
    assert CancelFirmware(1) in commands(h)
    assert isinstance(commands(h)[-1], DownloadFirmware) and commands(h)[-1].request_id == 2
    frames += progress(h, "Downloaded", 1, path="/tmp/old.tar")  # too late: ignored
    assert [f[3] for f in calls(frames, "FirmwareStatusNotification")] == [
        {"status": "Downloading", "requestId": 2}
    ]


def test_a_switch_under_way_cannot_be_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """L01.FR.27: while installing, a new UpdateFirmware is Rejected."""
    h = station(monkeypatch)
    update_firmware(h, 1)
    download_and_verify(h, 1)
    status, _ = update_firmware(h, 2)
    assert status == "Rejected"
    assert CancelFirmware(1) not in commands(h)


def test_tc_l_18_missing_signing_certificate_and_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TC_L_18_CS: UpdateFirmware without signingCertificate and signature: Rejected
    (this station takes signed firmware only)."""
    h = station(monkeypatch)
    answer = h.receive(
        [
            2,
            "u",
            "UpdateFirmware",
            {
                "requestId": 1,
                "firmware": {"location": "https://fw.example/x", "retrieveDateTime": NOW},
            },
        ]
    )[0]
    assert answer[2]["status"] == "Rejected"
    # L02 on purpose not supported: the answer says why
    assert answer[2]["statusInfo"]["reasonCode"] == "UnsignedFirmware"
    assert commands(h) == [] and firmware_statuses(reply(h, h.drain())) == []


def test_a_running_transaction_defers_the_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    """L01.FR.06: verified firmware waits (InstallScheduled) until the transaction ends."""
    h = station(monkeypatch)
    h.station.station_event(h.now, SessionStarted(1, 1, None, sample()))
    reply(h, h.drain())
    _, frames = update_firmware(h, 4)
    frames += download_and_verify(h, 4)
    assert firmware_statuses(frames)[-1] == "InstallScheduled"
    assert not any(isinstance(c, InstallFirmware) for c in commands(h))
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.LOCAL, sample()))
    frames += reply(h, h.drain())
    assert firmware_statuses(frames)[-2:] == ["InstallScheduled", "Installing"]
    assert commands(h)[-1] == InstallFirmware(4, "/tmp/fw.tar")


def test_a_rolled_back_release_reports_installation_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the reboot the old release runs (the new one was rolled back):
    InstallationFailed instead of Installed, no FirmwareUpdated event."""
    store = FakeStore()
    h = station(monkeypatch, store=store)
    update_firmware(h, 5)
    download_and_verify(h, 5)
    progress(h, "InstallRebooting", 5, version="9.9.9")
    again = Harness(store)  # still 0.1.0
    boot = again.connect()
    assert boot[-1][3]["reason"] == "FirmwareUpdate"
    after = reply(again, again.reply(boot[-1], boot_result()))
    assert firmware_statuses(after) == ["InstallationFailed"]
    assert "FirmwareUpdated" not in security_events(after)


# ------------------------------------------------ L01.FR.07: EVSEs held Unavailable
def status_notifications(frames: list[Any]) -> list[tuple[int, str]]:
    return [(f[3]["evseId"], f[3]["connectorStatus"]) for f in calls(frames, "StatusNotification")]


def availability(h: Harness) -> list[SetAvailability]:
    return [c for c in h.commands if isinstance(c, SetAvailability)]


def waiting_for_a_transaction(h: Harness, request_id: int) -> list[Any]:
    """A transaction on EVSE 1 (its connector Occupied), then a verified update."""
    h.station.station_event(h.now, ConnectorStatusChanged(1, 1, ConnectorStatus.OCCUPIED))
    h.station.station_event(h.now, SessionStarted(1, 1, None, sample()))
    reply(h, h.drain())
    _, frames = update_firmware(h, request_id)
    return frames + download_and_verify(h, request_id)


def test_l01_fr_07_free_evses_unavailable_while_the_install_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """L01.FR.06/07: the install waits for the transaction on EVSE 1 (InstallScheduled);
    meanwhile every EVSE is set Unavailable (EVSE 2 at once: StatusNotification
    Unavailable; EVSE 1 by the runtime once its session is over), so no new
    transaction starts; EVSE 1 free again is reported Unavailable, not Available;
    then Installing.  The install fails: both EVSEs are Available again."""
    h = station(monkeypatch)
    frames = waiting_for_a_transaction(h, 4)
    assert firmware_statuses(frames)[-1] == "InstallScheduled"
    assert availability(h) == [SetAvailability(None, None, operative=False)]
    assert status_notifications(frames) == [(2, "Unavailable")]
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.LOCAL, sample()))
    h.station.station_event(h.now, ConnectorStatusChanged(1, 1, ConnectorStatus.AVAILABLE))
    frames = reply(h, h.drain())
    assert firmware_statuses(frames) == ["Installing"]
    assert status_notifications(frames) == [(1, "Unavailable")]
    frames = progress(h, "InstallationFailed", 4, detail="pip failed")
    assert availability(h)[1:] == [
        SetAvailability(1, None, operative=True),
        SetAvailability(2, None, operative=True),
    ]
    assert status_notifications(frames) == [(1, "Available"), (2, "Available")]


def test_l01_fr_07_a_cancelled_install_releases_the_evses_but_not_the_csms_inoperative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EVSE 2 set Inoperative by the CSMS (G03); the install waits for EVSE 1's
    transaction (EVSEs held); a newer UpdateFirmware cancels it (AcceptedCanceled,
    L01.FR.24): EVSE 1 is released, EVSE 2 stays Inoperative (G03.FR.08)."""
    h = station(monkeypatch)
    change = [
        2,
        "ca",
        "ChangeAvailability",
        {"operationalStatus": "Inoperative", "evse": {"id": 2}},
    ]
    assert h.receive(change)[0][2] == {"status": "Accepted"}
    waiting_for_a_transaction(h, 1)
    assert availability(h)[-1] == SetAvailability(None, None, operative=False)
    status, _ = update_firmware(h, 2, retrieveDateTime="2026-01-01T01:00:10.000Z")
    assert status == "AcceptedCanceled"
    assert availability(h)[-1] == SetAvailability(1, None, operative=True)
    assert SetAvailability(2, None, operative=True) not in availability(h)


# ------------------------------------------------------- a restart mid-job
def restart(
    monkeypatch: pytest.MonkeyPatch,
    store: FakeStore,
    version: str = "0.1.0",
    protocol: ProtocolVersion = ProtocolVersion.V201,
) -> tuple[Harness, list[Any]]:
    """The service restarts (power cut, crash): a new core on the same state store,
    running ``version``; booted; returns it and what it sent."""
    monkeypatch.setattr(helpers, "IDENTITY", replace(helpers.IDENTITY, firmware_version=version))
    again = Harness(store)
    boot = again.connect(protocol)
    assert boot[-1][2] == "BootNotification"
    frames = [boot[-1], *reply(again, again.reply(boot[-1], boot_result()))]
    return again, frames


def test_restart_while_the_download_is_scheduled_keeps_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DownloadScheduled, restart: TriggerMessage still reports DownloadScheduled with the
    requestId, and the download starts at retrieveDateTime."""
    store = FakeStore()
    h = station(monkeypatch, store=store)
    update_firmware(h, 3, retrieveDateTime="2026-01-01T00:10:10.000Z")
    again, frames = restart(monkeypatch, store)
    assert again.station._firmware.firmware_status() == ("DownloadScheduled", 3)
    assert firmware_statuses(frames) == [] and commands(again) == []
    frames = reply(again, again.advance(620))
    assert firmware_statuses(frames) == ["Downloading"]
    assert isinstance(commands(again)[-1], DownloadFirmware)


def test_restart_during_the_download_starts_it_again_once_then_download_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Downloading, restart: once Accepted, Downloading again (the same request); a second
    restart in the download: DownloadFailed (OCPP 2.1: statusInfo says Interrupted)."""
    store = FakeStore()
    h = station(monkeypatch, store=store)
    update_firmware(h, 5)
    again, frames = restart(monkeypatch, store)
    assert firmware_statuses(frames) == ["Downloading"]
    assert calls(frames, "FirmwareStatusNotification")[0][3]["requestId"] == 5
    assert commands(again) == [
        DownloadFirmware(5, "https://fw.example/chargepoint-9.9.9.tar", 3, 60, CERT, "c2lnbmF0dXJl")
    ]
    third, frames = restart(monkeypatch, store, protocol=ProtocolVersion.V21)
    [notification] = calls(frames, "FirmwareStatusNotification")
    assert notification[3]["status"] == "DownloadFailed" and notification[3]["requestId"] == 5
    assert notification[3]["statusInfo"]["reasonCode"] == "Interrupted"
    assert commands(third) == [] and third.station._firmware.firmware_status() == ("Idle", None)


def test_restart_while_the_install_waits_downloads_and_checks_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SignatureVerified, InstallScheduled (a transaction runs), restart: the file is not
    trusted across the restart: Downloading again, then the usual steps (the transaction
    ended with the restart)."""
    store = FakeStore()
    h = station(monkeypatch, store=store)
    waiting_for_a_transaction(h, 6)
    again, frames = restart(monkeypatch, store)
    # (InstallScheduled, still queued before the restart, goes out first)
    assert firmware_statuses(frames)[-1:] == ["Downloading"]
    assert isinstance(commands(again)[-1], DownloadFirmware)
    # the runtime ends the transaction the restart cut short (PowerLoss)
    again.station.station_event(again.now, SessionEnded(1, StoppedReason.POWER_LOSS, sample()))
    frames = download_and_verify(again, 6)
    assert firmware_statuses(frames) == ["Downloaded", "SignatureVerified", "Installing"]


def test_restart_during_the_install_reports_installation_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installing, restart before the switch (the same release runs): InstallationFailed
    once Accepted; the boot reason is not FirmwareUpdate."""
    store = FakeStore()
    h = station(monkeypatch, store=store)
    update_firmware(h, 8)
    download_and_verify(h, 8)
    again, frames = restart(monkeypatch, store)
    assert frames[0][3]["reason"] != "FirmwareUpdate"
    assert firmware_statuses(frames) == ["InstallationFailed"]
    assert not any(isinstance(c, DownloadFirmware | InstallFirmware) for c in commands(again))
    assert store.state["firmware"] == {}


def test_restart_after_the_switch_but_before_install_rebooting_reports_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installing, the switch done, the restart before InstallRebooting was stored: the
    new release runs, so the boot is FirmwareUpdate and the outcome Installed."""
    store = FakeStore()
    h = station(monkeypatch, store=store)
    update_firmware(h, 9)
    download_and_verify(h, 9)
    _, frames = restart(monkeypatch, store, version="9.9.9")
    assert frames[0][3]["reason"] == "FirmwareUpdate"
    assert firmware_statuses(frames) == ["Installed"]
    assert "FirmwareUpdated" in security_events(frames)


def test_l03_l04_publish_firmware_is_a_local_controller_use_case() -> None:
    """PublishFirmware / UnpublishFirmware (L03/L04) are for a Local Controller, which
    this station is not: CALLERROR NotSupported."""
    h = Harness()
    reply(h, h.boot())
    publish = {"location": "https://fw.example/x", "checksum": "0" * 32, "requestId": 1}
    assert h.receive([2, "p", "PublishFirmware", publish])[0][:3] == [4, "p", "NotSupported"]
    unpublish = {"checksum": "0" * 32}
    assert h.receive([2, "q", "UnpublishFirmware", unpublish])[0][:3] == [4, "q", "NotSupported"]


def test_a_csms_cannot_make_the_download_retry_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """retries / retryInterval from the CSMS are clamped (10 retries, 1 h apart) before
    they reach the runtime's retry loop and its sleep."""
    h = station(monkeypatch, signing=FakeSigning())
    body = {
        "location": "https://fw.example/chargepoint-9.9.9.tar",
        "retrieveDateTime": TWO_HOURS_AGO,
        "signingCertificate": CERT,
        "signature": "c2lnbmF0dXJl",
    }
    payload = {"requestId": 3, "retries": 2**31 - 1, "retryInterval": 2**31 - 1, "firmware": body}
    frames = h.receive([2, "u3", "UpdateFirmware", payload])
    assert frames[0][2]["status"] == "Accepted"
    [download] = [c for c in commands(h) if isinstance(c, DownloadFirmware)]
    assert (download.retries, download.retry_interval_s) == (10, 3600)
