"""Certificate use cases in the core with a scripted store (fake clock): the policies."""

from __future__ import annotations

from chargepoint.ocpp.certificates import CertificateHash, InstalledCertificate, Outcome

from .helpers import Harness, calls

ROOT = CertificateHash("aa", "bb", "1")


class ScriptedStore:
    """A CertificateStore whose answers the test decides."""

    def __init__(self) -> None:
        self.entries = [InstalledCertificate("CSMSRootCertificate", ROOT)]
        self.csrs: list[str] = []
        self.signed: list[str] = []

    def installed(self) -> list[InstalledCertificate]:
        return list(self.entries)

    def has_station_certificate(self) -> bool:
        return bool(self.signed)

    def install_root(self, use: str, pem: str) -> Outcome:
        return Outcome(False, "disk full", failed=True)

    def delete(self, target: CertificateHash) -> Outcome:
        self.entries = [e for e in self.entries if e.hash != target]
        return Outcome(True)

    def create_csr(self, use: str, common_name: str, organization: str) -> str:
        self.csrs.append(f"{use}/{common_name}/{organization}")
        return f"-----BEGIN CERTIFICATE REQUEST-----\n{len(self.csrs)}\n"

    def accept_signed(self, use: str, chain_pem: str) -> Outcome:
        self.signed.append(chain_pem)
        return Outcome(True)


def trigger_signing(h: Harness) -> list[object]:
    frames = h.receive(
        [2, "t", "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}]
    )
    assert frames[0] == [3, "t", {"status": "Accepted"}]
    return frames


def test_a_missing_certificate_signed_leads_to_a_new_csr_with_doubling_waits() -> None:
    store = ScriptedStore()
    h = Harness(certificates=store)
    h.answer_all(h.boot(interval=100_000))
    [sign] = calls(trigger_signing(h), "SignCertificate")  # type: ignore[arg-type]
    assert sign[3]["certificateType"] == "ChargingStationCertificate"
    assert store.csrs == ["ChargingStationCertificate/CS-001/"]
    h.reply(sign, {"status": "Accepted"})
    # A02: CertSigningWaitMinimum (60 s) doubled each time, CertSigningRepeatTimes (3) CSRs more
    for wait in (60, 120, 240):
        assert calls(h.advance(wait - 1), "SignCertificate") == []
        [sign] = calls(h.advance(2), "SignCertificate")
        h.reply(sign, {"status": "Accepted"})
    assert calls(h.advance(10_000), "SignCertificate") == []
    assert len(store.csrs) == 4


def test_no_retry_once_the_certificate_arrived() -> None:
    store = ScriptedStore()
    h = Harness(certificates=store)
    h.answer_all(h.boot())
    [sign] = calls(trigger_signing(h), "SignCertificate")  # type: ignore[arg-type]
    h.reply(sign, {"status": "Accepted"})
    answer = h.receive([2, "c", "CertificateSigned", {"certificateChain": "PEM"}])[0]
    assert answer[2] == {"status": "Accepted"}
    assert calls(h.advance(10_000), "SignCertificate") == []


def test_install_failure_and_deletion_rules() -> None:
    store = ScriptedStore()
    h = Harness(certificates=store)
    h.answer_all(h.boot())
    install = {"certificateType": "CSMSRootCertificate", "certificate": "PEM"}
    answer = h.receive([2, "i", "InstallCertificate", install])[0][2]
    assert answer["status"] == "Failed"  # storage problem, not a bad certificate
    oem = {"certificateType": "OEMRootCertificate", "certificate": "PEM"}
    answer = h.receive([2, "o", "InstallCertificate", oem])[0]
    assert answer[:3] == [4, "o", "PropertyConstraintViolation"]  # 2.1 only
    # profile 1: the last CSMS root may go
    delete = {"certificateHashData": ROOT.to_json()}
    assert h.receive([2, "d", "DeleteCertificate", delete])[0][2] == {"status": "Accepted"}
    assert h.receive([2, "d2", "DeleteCertificate", delete])[0][2] == {"status": "NotFound"}


def test_signing_without_a_store_is_rejected() -> None:
    h = Harness()
    h.answer_all(h.boot())
    frames = h.receive(
        [2, "t", "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}]
    )
    assert frames == [[3, "t", {"status": "Rejected"}]]
