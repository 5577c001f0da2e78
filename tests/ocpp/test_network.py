"""SetNetworkProfile, the slot order and the A05 upgrade with fall-back (core, fake clock)."""

from __future__ import annotations

from typing import Any

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.certificates import CertificateHash, InstalledCertificate, NoCertificates
from chargepoint.ocpp.network import NetworkProfiles
from chargepoint.ocpp.station import Link, OpenConnection

from .helpers import FakeStore, Harness, boot_result, calls


def connection_data(profile: int, url: str = "wss://csms.example/ocpp") -> dict[str, Any]:
    return {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": url,
        "messageTimeout": 30,
        "securityProfile": profile,
        "ocppInterface": "Wired0",
    }


def set_network_profile(h: Harness, slot: int, data: dict[str, Any]) -> dict[str, Any]:
    answer = h.receive(
        [2, f"n{slot}", "SetNetworkProfile", {"configurationSlot": slot, "connectionData": data}]
    )[0]
    assert answer[0] == 3, answer
    result: dict[str, Any] = answer[2]
    return result


def last_open(h: Harness) -> OpenConnection:
    action = h.other[-1]
    assert isinstance(action, OpenConnection)
    return action


def fail_attempt(h: Harness) -> OpenConnection:
    """Let the pending attempt fail and wait for the next one."""
    assert h.station.link is Link.CONNECTING
    h.station.connection_failed(h.now, "refused")
    h.drain()
    deadline = h.station.next_deadline()
    assert deadline is not None
    h.advance(deadline - h.now)
    return last_open(h)


def test_set_network_profile_checks_and_stores() -> None:
    h = Harness()
    h.answer_all(h.boot())
    assert set_network_profile(h, 1, connection_data(2)) == {"status": "Accepted"}
    assert h.store.state["network"]["slots"]["1"]["ocppCsmsUrl"] == "wss://csms.example/ocpp"
    refused = {
        0: connection_data(2),  # the configuration file's slot
        4: connection_data(2),  # not in NetworkConfigurationPriority's valuesList
    }
    for slot, data in refused.items():
        assert set_network_profile(h, slot, data)["status"] == "Rejected"
    mismatch = connection_data(2, "ws://csms.example/ocpp")
    assert set_network_profile(h, 2, mismatch)["statusInfo"]["reasonCode"] == "InvalidURL"
    # A05: profile 3 needs a ChargingStationCertificate first
    assert set_network_profile(h, 2, connection_data(3))["statusInfo"] == {
        "reasonCode": "NoCertificate"
    }


def upgraded_harness(store: FakeStore | None = None) -> Harness:
    """Slot 1 holds a profile-2 connection and is tried first (after the reboot)."""
    store = store or FakeStore()
    store.state.setdefault(
        "network", {"floor": 0, "slots": {"1": connection_data(2, "wss://new.example/ocpp")}}
    )
    return Harness(
        store,
        overrides={
            "OCPPCommCtrlr.NetworkConfigurationPriority": "1,0",
            "OCPPCommCtrlr.NetworkProfileConnectionAttempts": "2",
        },
    )


def test_a05_upgrade_falls_back_to_the_previous_profile_when_the_new_one_fails() -> None:
    h = upgraded_harness()
    h.station.start(h.now)
    h.started = True
    h.drain()
    first = last_open(h)
    assert (first.configuration_slot, first.security_profile) == (1, 2)
    assert first.csms_url == "wss://new.example/ocpp"
    second = fail_attempt(h)
    assert second.configuration_slot == 1  # NetworkProfileConnectionAttempts = 2
    fallback = fail_attempt(h)
    assert (fallback.configuration_slot, fallback.security_profile) == (0, 1)
    assert fallback.csms_url is None and fallback.basic_auth_password is not None
    h.station.connection_opened(h.now, h.station.version)
    assert h.model.value(dm.SECURITY, dm.SECURITY_PROFILE) == "1"


def test_a05_after_connecting_with_the_higher_profile_there_is_no_way_back() -> None:
    store = FakeStore()
    h = upgraded_harness(store)
    frames = h.connect()  # slot 1, profile 2
    assert last_open(h).configuration_slot == 1
    h.answer_all(h.reply(frames[-1], boot_result()))
    assert h.model.value(dm.SECURITY, dm.SECURITY_PROFILE) == "2"
    assert store.state["network"]["floor"] == 2
    events = calls(h.sent, "SecurityEventNotification")
    assert [e[3]["type"] for e in events] == ["ReconfigurationOfSecurityParameters"]
    # 2.0.1 forbids downgrades
    assert set_network_profile(h, 2, connection_data(1, "ws://old.example/ocpp"))["statusInfo"] == {
        "reasonCode": "NoDowngrade"
    }
    # after a restart, failures on slot 1 never lead back to slot 0 (profile 1)
    again = upgraded_harness(store)
    again.station.start(again.now)
    again.started = True
    again.drain()
    for _ in range(5):
        assert fail_attempt(again).configuration_slot == 1


def test_the_connected_slot_stays_current_when_the_floor_rises() -> None:
    profiles = NetworkProfiles(
        1,
        ("0", "2", "1"),
        {
            "floor": 0,
            "slots": {
                "1": connection_data(2, "wss://two.example/ocpp"),
                "2": connection_data(3, "wss://three.example/ocpp"),
            },
        },
    )
    assert [profiles.failed(1).slot for _ in range(2)] == [2, 1]  # type: ignore[union-attr]
    assert profiles.connected()  # slot 1, profile 2: the floor rises to 2
    assert profiles.current().slot == 1
    assert [p.slot for p in profiles.usable()] == [2, 1]
    assert profiles.failed(1).slot == 2  # type: ignore[union-attr]
    assert profiles.failed(1).slot == 1  # type: ignore[union-attr]


class _Certs(NoCertificates):
    """A certificate store holding a CSMS root and/or a station certificate."""

    def __init__(self, *, root: bool, station: bool) -> None:
        self.root, self.station = root, station

    def installed(self) -> list[InstalledCertificate]:
        digest = CertificateHash("SHA256", "aa", "bb", "1")
        return [InstalledCertificate("CSMSRootCertificate", digest)] if self.root else []

    def has_station_certificate(self) -> bool:
        return self.station


def set_priority(h: Harness, value: str) -> dict[str, Any]:
    frames = h.receive(
        [
            2,
            "sp",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": value,
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "NetworkConfigurationPriority"},
                    }
                ]
            },
        ]
    )
    result: dict[str, Any] = frames[0][2]["setVariableResult"][0]
    return result


def test_tc_a_20_no_upgrade_without_a_csms_root_certificate() -> None:
    """TC_A_20_CS: profile 1, no CSMSRootCertificate; the CSMS stores a profile-2
    connection and puts its slot first in NetworkConfigurationPriority: Rejected."""
    h = Harness(certificates=_Certs(root=False, station=False))
    h.answer_all(h.boot())
    assert set_network_profile(h, 1, connection_data(2))["status"] == "Accepted"  # may be
    answer = set_priority(h, "1,0")
    assert answer["attributeStatus"] == "Rejected"
    assert answer["attributeStatusInfo"] == {"reasonCode": "NoRootCertificate"}
    # with the root installed the same priority is accepted (TC_A_19)
    ok = Harness(certificates=_Certs(root=True, station=False))
    ok.answer_all(ok.boot())
    set_network_profile(ok, 1, connection_data(2))
    assert set_priority(ok, "1,0")["attributeStatus"] in ("Accepted", "RebootRequired")


def test_tc_a_21_no_profile_3_without_a_station_certificate() -> None:
    """TC_A_21_CS: a profile-3 slot without a ChargingStationCertificate is refused,
    by SetNetworkProfile and by NetworkConfigurationPriority alike."""
    h = Harness(certificates=_Certs(root=True, station=False))
    h.answer_all(h.boot())
    assert set_network_profile(h, 1, connection_data(3))["statusInfo"] == {
        "reasonCode": "NoCertificate"
    }
    store = FakeStore()
    store.state["network"] = {"floor": 0, "slots": {"1": connection_data(3)}}
    later = Harness(store, certificates=_Certs(root=True, station=False))
    later.answer_all(later.boot())
    answer = set_priority(later, "1,0")
    assert answer["attributeStatus"] == "Rejected"
    assert answer["attributeStatusInfo"] == {"reasonCode": "NoCertificate"}


def test_tc_a_22_no_downgrade_through_the_priority_list() -> None:
    """TC_A_22_CS: once connected with profile 2, a slot with profile 1 can neither
    be stored nor put in NetworkConfigurationPriority."""
    store = FakeStore()
    h = upgraded_harness(store)
    frames = h.connect()
    h.answer_all(h.reply(frames[-1], boot_result()))
    assert h.model.value(dm.SECURITY, dm.SECURITY_PROFILE) == "2"
    assert set_network_profile(h, 2, connection_data(1, "ws://old.example/ocpp"))["statusInfo"] == {
        "reasonCode": "NoDowngrade"
    }
    answer = set_priority(h, "0,1")  # slot 0: the configuration file's profile 1
    assert answer["attributeStatus"] == "Rejected"
    assert answer["attributeStatusInfo"] == {"reasonCode": "NoDowngrade"}
