"""Functional blocks A and M: certificates, certificate signing, security events (sans-I/O).

Theory of operation: the certificates themselves live behind
:class:`~chargepoint.ocpp.certificates.CertificateStore` (the adapter does the
cryptography); this block keeps the policies.  A CSR goes out as a
SignCertificate when the CSMS triggers it (A02/A03); after an Accepted answer
the station waits CertSigningWaitMinimum (doubled on each attempt) for the
CertificateSigned and then sends a new CSR, at most CertSigningRepeatTimes
times.  Security events (A04) are queued durably, one per type while waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.certificates import (
    CHARGING_STATION_CERTIFICATE,
    CSMS_ROOT,
    ROOT_USES_V21,
    ROOT_USES_V201,
    V2G_CERTIFICATE,
    V2G_CERTIFICATE_CHAIN,
    CertificateHash,
    CertificateStore,
    Outcome,
)
from chargepoint.ocpp.outbox import Block, DeliverCommand, Handler, Outbox
from chargepoint.ocpp.queue import MessageKind
from chargepoint.ocpp.rpc import Call, JsonObject, ProtocolVersion
from chargepoint.ocpp.station_io import RecordSecurityEvent, SecurityEventOccurred, StationEvent

logger = logging.getLogger(__name__)


def _status_info(outcome: Outcome, code: str) -> JsonObject:
    info: JsonObject = {"reasonCode": code}
    if outcome.reason:
        info["additionalInfo"] = outcome.reason[:512]
    return info


class SecurityBlock(Block):
    """Installed certificates (M03-M05), CSRs (A02/A03), security events (A04)."""

    def __init__(self, outbox: Outbox, certificates: CertificateStore) -> None:
        self._outbox = outbox
        self._model = outbox.model
        self._certs = certificates
        #: certificate use -> (when to ask again, attempts so far) while a CSR is open
        self._signing: dict[str, tuple[float | None, int]] = {}
        self._refresh_certificate_entries()

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "InstallCertificate": self._on_install_certificate,
            "GetInstalledCertificateIds": self._on_get_installed_certificate_ids,
            "DeleteCertificate": self._on_delete_certificate,
            "CertificateSigned": self._on_certificate_signed,
        }

    def on_event(self, event: StationEvent, now: float) -> None:
        if isinstance(event, SecurityEventOccurred):
            self.security_event(now, event.kind, event.tech_info)

    # ======================================================== security events
    def security_event(self, now: float, kind: str, tech_info: str = "") -> None:
        """A04: queue a SecurityEventNotification (sent once connected and Accepted).

        An event of the same type that is still waiting is not repeated (a CSMS
        that keeps failing TLS must not fill the queue)."""
        # N01/A04: the station's own security log keeps every event, repeats included
        self._outbox.emit(
            DeliverCommand(
                RecordSecurityEvent(kind[:50], self._outbox.utc_now(now), tech_info[:255])
            )
        )
        # The one already on its way does not count: a new failure deserves a new event.
        waiting = self._outbox.queued(in_flight=False)
        if any(
            m.action == "SecurityEventNotification" and m.payload["type"] == kind for m in waiting
        ):
            return
        payload: JsonObject = {"type": kind[:50], "timestamp": self._outbox.utc_now(now)}
        if tech_info:
            payload["techInfo"] = tech_info[:255]
        self._outbox.enqueue("SecurityEventNotification", payload, MessageKind.OTHER)

    # ================================================ certificates (A02-A03, M)
    def has_station_certificate(self) -> bool:
        """A05: whether security profile 3 is possible."""
        return self._certs.has_station_certificate()

    def has_csms_root(self) -> bool:
        """A05: whether a CSMSRootCertificate is installed (TLS profiles possible)."""
        return any(c.use == "CSMSRootCertificate" for c in self._certs.installed())

    def _refresh_certificate_entries(self) -> None:
        installed = [c for c in self._certs.installed() if c.use != CHARGING_STATION_CERTIFICATE]
        self._model.update(dm.SECURITY, dm.CERTIFICATE_ENTRIES, str(len(installed)))

    def _root_uses(self) -> tuple[str, ...]:
        return ROOT_USES_V21 if self._outbox.version is ProtocolVersion.V21 else ROOT_USES_V201

    def _on_install_certificate(self, call: Call, now: float, size: int) -> JsonObject:
        use = call.payload["certificateType"]
        if use not in self._root_uses():
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownType"}}
        outcome = self._certs.install_root(use, call.payload["certificate"])
        if outcome.ok:
            self._refresh_certificate_entries()
            return {"status": "Accepted"}
        # M05: Rejected for a certificate that is not acceptable, Failed for storage.
        logger.warning("InstallCertificate %s refused: %s", use, outcome.reason)
        if outcome.failed:
            return {"status": "Failed", "statusInfo": _status_info(outcome, "StorageFailed")}
        return {
            "status": "Rejected",
            "statusInfo": _status_info(outcome, "InvalidCertificate"),
        }

    def _on_get_installed_certificate_ids(self, call: Call, now: float, size: int) -> JsonObject:
        wanted = call.payload.get("certificateType")
        known = self._root_uses()
        entries = [
            c
            for c in self._certs.installed()
            if (c.use in known or c.use == V2G_CERTIFICATE_CHAIN)
            and (not wanted or c.use in wanted)
        ]
        if not entries:
            return {"status": "NotFound"}  # M03
        return {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": c.use, "certificateHashData": c.hash.to_json()} for c in entries
            ],
        }

    def _on_delete_certificate(self, call: Call, now: float, size: int) -> JsonObject:
        target = CertificateHash.from_json(call.payload["certificateHashData"])
        installed = self._certs.installed()
        entry = next((c for c in installed if c.hash == target), None)
        if entry is None:
            return {"status": "NotFound"}  # M04
        if entry.use == CHARGING_STATION_CERTIFICATE:
            # M04.FR.06: the station's own certificate is never deleted this way.
            logger.warning("refusing to delete the ChargingStationCertificate")
            return {"status": "Failed", "statusInfo": {"reasonCode": "OwnCertificate"}}
        csms_roots = sum(1 for c in installed if c.use == CSMS_ROOT)
        profile = self._model.int_value(dm.SECURITY, dm.SECURITY_PROFILE)
        if entry.use == CSMS_ROOT and csms_roots == 1 and profile >= 2:
            # M04: deleting the only CSMSRootCertificate would leave a TLS station
            # unable to verify its CSMS, i.e. unable to ever reconnect.
            logger.warning("refusing to delete the last CSMSRootCertificate")
            return {"status": "Failed", "statusInfo": {"reasonCode": "LastCsmsRoot"}}
        outcome = self._certs.delete(target)
        if not outcome.ok:
            return {"status": "Failed", "statusInfo": _status_info(outcome, "DeleteFailed")}
        self._refresh_certificate_entries()
        return {"status": "Accepted"}

    # ------------------------------------------------------ signing (A02/A03)
    def trigger_signing(self, requested: str) -> bool:
        """F06 TriggerMessage SignChargingStationCertificate / SignV2GCertificate:
        send a CSR; ``False`` when none could be made."""
        use = (
            CHARGING_STATION_CERTIFICATE
            if requested == "SignChargingStationCertificate"
            else V2G_CERTIFICATE
        )
        if not self._request_certificate(use):
            return False
        self._signing[use] = (None, 0)
        return True

    def _request_certificate(self, use: str) -> bool:
        """A02/A03: a new key pair and a SignCertificate with its CSR."""
        if use == V2G_CERTIFICATE:
            common_name = self._model.value(dm.ISO15118, dm.SECC_ID) or ""
        else:
            common_name = self._model.value(dm.SECURITY, dm.IDENTITY) or ""
        organization = self._model.value(dm.SECURITY, dm.ORGANIZATION_NAME) or ""
        csr = self._certs.create_csr(use, common_name, organization)
        if not csr:
            return False

        def on_result(answer: JsonObject, now: float) -> None:
            self._on_sign_certificate_response(use, answer, now)

        self._outbox.send(
            "SignCertificate",
            {"csr": csr, "certificateType": use},
            requested_by_csms=True,
            on_result=on_result,
        )
        return True

    def _on_sign_certificate_response(self, use: str, payload: JsonObject, now: float) -> None:
        """A02/A03: Accepted means a CertificateSigned will follow; if it does not come
        within CertSigningWaitMinimum (doubled on each attempt), a new CSR goes out,
        at most CertSigningRepeatTimes times."""
        status = payload["status"]
        if status != "Accepted":
            logger.warning("CSMS answered SignCertificate %s for %s", status, use)
            self._signing.pop(use, None)
            return
        _, attempts = self._signing.get(use, (None, 0))
        wait = self._model.int_value(dm.SECURITY, dm.CERT_SIGNING_WAIT_MINIMUM) * 2**attempts
        self._signing[use] = (now + wait, attempts)

    def _on_certificate_signed(self, call: Call, now: float, size: int) -> JsonObject:
        use = call.payload.get("certificateType", CHARGING_STATION_CERTIFICATE)
        outcome = self._certs.accept_signed(use, call.payload["certificateChain"])
        if outcome.ok:
            # A02: the new certificate is used from the next connection on.
            self._signing.pop(use, None)
            return {"status": "Accepted"}
        logger.warning("CertificateSigned %s rejected: %s", use, outcome.reason)
        # A02/A03: a rejected certificate is a security event.
        self.security_event(now, "InvalidChargingStationCertificate", outcome.reason)
        return {
            "status": "Rejected",
            "statusInfo": _status_info(outcome, "InvalidCertificate"),
        }

    def next_deadline(self) -> float | None:
        if not self._outbox.connected:
            return None
        dues = [due for due, _ in self._signing.values() if due is not None]
        return min(dues) if dues else None

    def handle_timer(self, now: float) -> None:
        for use, (due, attempts) in list(self._signing.items()):
            if due is None or now < due:
                continue
            if attempts >= self._model.int_value(dm.SECURITY, dm.CERT_SIGNING_REPEAT_TIMES):
                logger.error(
                    "no CertificateSigned for %s after %d CSRs: giving up", use, attempts + 1
                )
                del self._signing[use]
                continue
            logger.warning("no CertificateSigned for %s yet: sending a new CSR", use)
            self._signing[use] = (None, attempts + 1)
            if not self._request_certificate(use):
                del self._signing[use]
