"""Building the ISO 15118-20 pieces of one EVSE from the configuration and the hardware.

Kept out of ``app.py`` so the composition root stays a list of wires: what
services an EVSE offers, which limits its power path has, and the TLS
material of the V2G server (a test PKI for simulated installations).
"""

from __future__ import annotations

import logging
import secrets
import ssl
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING

from chargepoint.adapters.v2g_pki import TestPki, create_test_pki_in_child, load_test_pki
from chargepoint.adapters.v2g_tls import evcc_client_context, secc_server_context
from chargepoint.config import Config, EvseConfig, Iso15118Config
from chargepoint.errors import ConfigError
from chargepoint.iso15118.secc.session import SeccSession
from chargepoint.iso15118.secc.settings import SeccSettings, SeccTimings, ServiceId
from chargepoint.power.arbitration import Arbiter, PowerLimits
from hal.power_stage import PowerStageCapabilities

if TYPE_CHECKING:
    from chargepoint.slac.matcher import SlacSettings

log = logging.getLogger(__name__)

LOOPBACK_INTERFACE = "lo"


@dataclass(frozen=True, slots=True)
class Tls:
    server: ssl.SSLContext | None
    pki: TestPki | None  # for the simulated car


def services_for(cfg: Iso15118Config, evse: EvseConfig, caps: PowerStageCapabilities | None
                 ) -> tuple[ServiceId, ...]:  # fmt: skip
    """What this EVSE can offer: its kind, the hardware's direction, the configuration."""
    if evse.kind == "dc":
        bidirectional = caps is not None and caps.bidirectional and cfg.allow_discharge
        possible = [ServiceId.DC_BPT, ServiceId.DC] if bidirectional else [ServiceId.DC]
    else:
        possible = [ServiceId.AC_BPT, ServiceId.AC] if cfg.allow_discharge else [ServiceId.AC]
    if cfg.services is None:
        return tuple(possible)
    wanted = [ServiceId[name] for name in cfg.services]
    return tuple(s for s in wanted if s in possible)


def secc_settings(config: Config, evse: EvseConfig, caps: PowerStageCapabilities | None
                  ) -> SeccSettings:  # fmt: skip
    cfg = config.iso15118
    assert cfg is not None
    services = services_for(cfg, evse, caps)
    if not services:
        raise ConfigError(
            "iso15118", [("services", f"evse {evse.id}: none of them fits its kind and hardware")]
        )
    return SeccSettings(
        evse_id=f"{cfg.evse_id_prefix}{evse.id:05d}",
        services=services,
        control_modes=cfg.control_modes,
        timings=SeccTimings(
            sequence_timeout_s=cfg.sequence_timeout_s,
            charge_loop_timeout_s=cfg.charge_loop_timeout_s,
            communication_setup_timeout_s=cfg.communication_setup_timeout_s,
        ),
        nominal_voltage_v=evse.nominal_voltage_v,
        ac_phases=evse.phases or 3,
        min_voltage_v=caps.min_voltage_v if caps is not None else 0.0,
        max_voltage_v=caps.max_voltage_v if caps is not None else evse.nominal_voltage_v,
        isolation_fault_ohm=config.safety.isolation_fault_ohm,  # the session's view of
        isolation_warning_ohm=config.safety.isolation_warning_ohm,  # IEC 61851-23 6.3.1.105
        meter_id=f"{config.station.id}-{evse.id}",
        # OCPP K15: only a station with a CSMS has a schedule to wait for
        csms_schedule_wait_s=cfg.csms_schedule_wait_s if config.csms is not None else 0.0,
    )


def arbiter_for(evse: EvseConfig, caps: PowerStageCapabilities | None) -> Arbiter:
    """Sources known at start: the hardware and the configuration (operator/CSMS later)."""
    arbiter = Arbiter()
    if caps is not None:
        arbiter.set_source(
            "hardware",
            PowerLimits(
                max_charge_power_w=caps.max_export_power_w,
                max_charge_current_a=caps.max_export_current_a,
                max_discharge_power_w=caps.max_import_power_w if caps.bidirectional else 0.0,
                max_discharge_current_a=caps.max_import_current_a if caps.bidirectional else 0.0,
                max_voltage_v=caps.max_voltage_v,
                min_voltage_v=caps.min_voltage_v,
                discharge_allowed=caps.bidirectional,
            ),
        )
    if evse.kind == "dc":
        power = evse.max_power_w if evse.max_power_w is not None else float("inf")
        config_limits = PowerLimits(
            max_charge_current_a=evse.max_current_a,
            max_discharge_current_a=evse.max_current_a,
            max_charge_power_w=power,
            max_discharge_power_w=power,
        )
    else:
        phases = evse.phases or 3
        ac_power = evse.max_current_a * evse.nominal_voltage_v * phases
        if evse.max_power_w is not None:
            ac_power = min(ac_power, evse.max_power_w)
        config_limits = PowerLimits(max_charge_power_w=ac_power, max_discharge_power_w=ac_power)
    arbiter.set_source("config", config_limits)
    return arbiter


def new_session(settings: SeccSettings) -> SeccSession:
    return SeccSession(settings, random_bytes=secrets.token_bytes)


def tls_material(cfg: Iso15118Config) -> Tls:
    if cfg.tls == "off":
        log.warning(
            "iso15118.tls = 'off': ISO 15118-20 over plain TCP (lab setting; -20 requires TLS 1.3)"
        )
        pki = _test_pki(cfg.test_pki_dir) if cfg.test_pki_dir is not None else None
        return Tls(None, pki)
    pki = None
    if cfg.cert_chain is not None and cfg.key is not None:
        chain, key, client_ca = cfg.cert_chain, cfg.key, cfg.client_ca
    else:
        assert cfg.test_pki_dir is not None  # the config validator checked
        pki = _test_pki(cfg.test_pki_dir)
        chain, key, client_ca = pki.secc_chain, pki.secc_key, cfg.client_ca or pki.oem_root_cert
    try:
        context = secc_server_context(
            cert_chain=chain,
            key=key,
            client_ca=client_ca,
            require_client_cert=cfg.require_client_cert,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("iso15118", [("cert_chain", f"{chain}: {exc}")]) from exc
    return Tls(context, pki)


def car_tls(pki: TestPki | None) -> ssl.SSLContext | None:
    if pki is None:
        return None
    return evcc_client_context(
        trust_root=pki.v2g_root_cert, cert_chain=pki.ev_chain, key=pki.ev_key
    )


def _test_pki(directory: Path) -> TestPki:
    if (directory / "pki.json").exists():
        return load_test_pki(directory)
    log.warning("creating a test PKI in %s (simulated installations only)", directory)
    return create_test_pki_in_child(directory)  # cryptography stays out of the service


def ipv6_interface(cfg: Iso15118Config, evse: EvseConfig) -> str:
    """Where the car's IPv6 traffic arrives: the EVSE's PLC modem, else ``[iso15118]``'s
    interface (loopback, or a lab EVCC on Ethernet; a simulated PLC link carries
    only SLAC frames, so its IPv6 also runs there)."""
    if evse.plc is not None and evse.plc.backend == "packet":
        return evse.plc.interface
    return cfg.interface


def server_host(interface: str) -> tuple[str, IPv6Address | None]:
    """Where the V2G server listens: ``::1`` on loopback, else the link-local address."""
    if interface == LOOPBACK_INTERFACE:
        return "::1", IPv6Address("::1")
    from chargepoint.adapters.sdp_server import link_local_address  # noqa: PLC0415

    address = link_local_address(interface)
    return f"{address}%{interface}", address


def slac_settings(evse: EvseConfig) -> SlacSettings:
    """ISO 15118-3 timers from ``[evse.plc]``; E/F wake-up for AC by default [V2G3-M06-07]."""
    from chargepoint.slac.matcher import SlacSettings  # noqa: PLC0415 - only with a PLC link

    plc = evse.plc
    assert plc is not None
    ef_wakeup = evse.kind == "ac" if plc.ef_wakeup is None else plc.ef_wakeup
    return SlacSettings(
        slac_init_s=plc.slac_init_s, ef_wakeup=ef_wakeup, confirm_join=plc.confirm_join
    )
