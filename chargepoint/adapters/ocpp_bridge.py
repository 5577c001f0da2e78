"""Wire the OCPP client to the EVSE runners.

Runner notices (state changes, faults, sessions, meter readings) become OCPP
station events; OCPP commands (remote start/stop, availability, reset) become
controller events. The bridge never blocks the safety path: notices reach it
from each runner's notice loop, and ``OcppClient.submit`` never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from chargepoint.adapters.evse_runner import EvseRunner
from chargepoint.adapters.firmware_update import FirmwareUpdater, ManufacturerRoot, UpdaterSettings
from chargepoint.adapters.log_upload import LogFiles, LogUploader
from chargepoint.adapters.ocpp_client import OcppClient, OcppClientSettings
from chargepoint.config import Config, Secret
from chargepoint.errors import ConfigError
from chargepoint.evse.actions import (
    Action,
    ContactorChanged,
    FaultLatched,
    FaultsCleared,
    StateChanged,
)
from chargepoint.evse.events import (
    ClearFaults,
    SetAvailable,
    SetCurrentLimit,
    StartCharging,
    StopCharging,
)
from chargepoint.evse.session import SessionSummary
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.iso15118.secc.actions import Action as SeccAction
from chargepoint.iso15118.secc.actions import EvNeeds, EvScheduleChosen
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station import StationIdentity
from chargepoint.ocpp.station_io import (
    CancelFirmware,
    ChargingLimit,
    ChargingNeedsAnswer,
    ChargingState,
    ConnectorStatus,
    ConnectorStatusChanged,
    Deauthorize,
    DownloadFirmware,
    EvChargingNeeds,
    EvChargingSchedule,
    EvSchedulePeriod,
    EvseActivity,
    EvseRating,
    FaultCleared,
    FaultRaised,
    FirmwareProgress,
    IdToken,
    InstallFirmware,
    LogUploadProgress,
    MeterSample,
    RebootForFirmware,
    RecordSecurityEvent,
    RemoteStart,
    RemoteStop,
    ResetKind,
    ResetRequested,
    SessionEnded,
    SetAvailability,
    StationCommand,
    StoppedReason,
    UnlockConnector,
    UploadLog,
)
from chargepoint.power.arbitration import CSMS_SOURCE, INF, PowerLimits
from chargepoint.power.grid_schedule import GridSchedule, GridStep
from hal.meter import MeterReading

if TYPE_CHECKING:
    from chargepoint.adapters.v2g_server import V2gServer

log = logging.getLogger(__name__)


def client_settings(config: Config) -> OcppClientSettings | None:
    """OCPP client settings from the ``[csms]`` section (None: no CSMS configured)."""
    csms = config.csms
    if csms is None:
        return None
    station = config.station
    return OcppClientSettings(
        csms_url=csms.url,
        identity=station.id,
        station=StationIdentity(
            vendor_name=station.vendor,
            model=station.model,
            evse_connectors={e.id: len(e.connectors) for e in config.evse},
            evse_ratings={
                e.id: EvseRating(
                    dc=e.kind == "dc",
                    voltage_v=e.nominal_voltage_v,
                    phases=1 if e.kind == "dc" else (e.phases or 3),
                    max_current_a=e.max_current_a,
                    max_power_w=e.max_power_w,
                    connector_types=tuple(c.type for c in sorted(e.connectors, key=lambda c: c.id)),
                )
                for e in config.evse
            },
            serial_number=station.serial_number,
            firmware_version=station.firmware_version,
            firmware_signing=(
                ManufacturerRoot.load(
                    Path(csms.firmware_signing_root),
                    Path(csms.firmware_signing_crl) if csms.firmware_signing_crl else None,
                )
                if csms.firmware_signing_root is not None
                else None
            ),
        ),
        state_file=Path(config.runtime.state_dir) / "ocpp.sqlite3",
        basic_auth_password=csms.password.resolve() if csms.password is not None else None,
        security_profile=csms.security_profile,
        csms_root_certificates=Path(csms.ca_file) if csms.ca_file is not None else None,
        subprotocols=tuple(ProtocolVersion(p) for p in csms.subprotocols),
        websocket_ping_interval_s=round(csms.ping_interval_s),
        station_certificate=Path(csms.client_cert_file) if csms.client_cert_file else None,
        station_private_key=_key_file(csms.client_key),
    )


def _key_file(secret: Secret | None) -> Path | None:
    """The client key for security profile 3 must be a file (mode 0600) on the station."""
    if secret is None:
        return None
    if secret.file is None:
        raise ConfigError(
            "csms", [("csms.client_key", "give the private key as { file = ... } (mode 0600)")]
        )
    return Path(secret.file)


ENERGY_TRANSFER_W = 50.0  # above this the EV is taking (or giving) energy


@dataclass
class _EvseTx:
    """What the bridge knows about one EVSE, for the OCPP transaction snapshot."""

    contactor_closed: bool = False
    energy_transfer: bool = False
    remote_authorized: bool = False  # RequestStartTransaction accepted
    token_authorized: bool = False  # a card on the EVSE's token reader (token_auth.py)
    id_token: IdToken | None = None
    remote_start_id: int | None = None
    stopped_reason: StoppedReason | None = None
    last: EvseActivity | None = None
    #: B12: the CSMS reset this EVSE mid-session: its snapshots say so until the EV leaves
    resetting: bool = False


class OcppBridge:
    def __init__(
        self,
        client: OcppClient,
        commands: asyncio.Queue[StationCommand],
        runners: dict[int, EvseRunner],
        request_stop: Callable[[], None],
        *,
        ev_soc: Callable[[int], float | None] | None = None,
        v2g: Mapping[int, V2gServer] | None = None,
        logs: LogFiles | None = None,
        firmware: UpdaterSettings | None = None,
    ) -> None:
        self.client = client
        # L01: downloads, signature checks and release installs for UpdateFirmware
        self._firmware = FirmwareUpdater(firmware, client.submit) if firmware is not None else None
        # N01: the station's diagnostics and security logs, uploaded on GetLog
        self._logs = logs
        self._uploader = LogUploader(logs, client.submit) if logs is not None else None
        self.runners = runners
        # ISO 15118-20 servers per EVSE: their power arbiter takes the CSMS's limits
        self._v2g: Mapping[int, V2gServer] = v2g if v2g is not None else {}
        # SoC as the EV reports it over ISO 15118 (None: not known, basic charging)
        self._ev_soc = ev_soc
        self.commands = commands
        self._request_stop = request_stop
        self._available: dict[int, bool] = dict.fromkeys(runners, True)
        self._scheduled_inoperative: set[int] = set()  # G03.FR.05: after the transaction
        self._scheduled_evse_reset: set[int] = set()  # B12 OnIdle: after the session
        self._tx: dict[int, _EvseTx] = {evse_id: _EvseTx() for evse_id in runners}

    # -- station -> CSMS ----------------------------------------------------------
    def start(self) -> None:
        """At service start: end transactions the previous run left open, report states.

        A transaction cannot outlive the process that supervised it: the
        contactors opened when the service died (the board's keep-alive), so a
        transaction restored from the durable store is ended as a power loss
        (OCPP 2.0.1 E: stoppedReason PowerLoss, triggerReason AbnormalCondition);
        an EV still plugged in starts a new one.
        """
        for evse_id, runner in self.runners.items():
            self.client.submit(
                SessionEnded(
                    evse_id, StoppedReason.POWER_LOSS, self._sample(evse_id), interrupted=True
                )
            )
            self._status(evse_id, runner.controller.state)
            self._activity(evse_id)

    def listener(self, evse_id: int, item: Action | SessionSummary | MeterReading) -> None:
        tx = self._tx[evse_id]
        match item:
            case StateChanged(new=new):
                self._status(evse_id, new)
                if new is EvseState.IDLE:  # the EV left: a new plug-in starts afresh
                    tx.remote_authorized = tx.token_authorized = False
                    tx.id_token = tx.remote_start_id = tx.stopped_reason = None
                    tx.resetting = False
                    if evse_id in self._scheduled_evse_reset:
                        self.commands.put_nowait(ResetRequested(ResetKind.IMMEDIATE, evse_id))
                    if evse_id in self._scheduled_inoperative:
                        # the scheduled change, now that the session is over
                        self.commands.put_nowait(SetAvailability(evse_id, None, operative=False))
                self._activity(evse_id)
            case ContactorChanged(closed=closed):
                tx.contactor_closed = closed
                self._activity(evse_id)
            case FaultLatched(fault=fault):
                self.client.submit(FaultRaised(evse_id, fault.kind.value, fault.detail))
            case FaultsCleared(kinds=kinds):
                for kind in kinds:
                    self.client.submit(FaultCleared(evse_id, kind.value))
            case MeterReading():
                self.client.submit(self._sample(evse_id, item))
                flowing = tx.contactor_closed and abs(item.power_w) > ENERGY_TRANSFER_W
                if flowing != tx.energy_transfer:
                    tx.energy_transfer = flowing
                    self._activity(evse_id)
            case _:
                pass

    def v2g_action(self, evse_id: int, action: SeccAction) -> None:
        """What an ISO 15118-20 session reports for the CSMS (K15: needs, schedule)."""
        match action:
            case EvNeeds():
                self.client.submit(_needs_event(evse_id, action, time.time()))
            case EvScheduleChosen():
                self.client.submit(_schedule_event(evse_id, action))
            case _:
                pass

    def _activity(self, evse_id: int) -> None:
        """Send the EVSE's transaction snapshot when it changed (E01/E06 start/stop points)."""
        runner, tx = self.runners[evse_id], self._tx[evse_id]
        ctl = runner.controller
        connected = ctl.state is not EvseState.IDLE
        # Free vend authorises the EV that is plugged in; a remote start authorises
        # ahead of the plug (TxStartPoint Authorized may then start the transaction).
        authorized = tx.remote_authorized or tx.token_authorized or (connected and ctl.authorized)
        activity = EvseActivity(
            evse_id=evse_id,
            connector_id=1,
            ev_connected=connected,
            authorized=authorized,
            power_path_closed=tx.contactor_closed,
            energy_transfer=tx.energy_transfer,
            meter=self._sample(evse_id),
            id_token=tx.id_token,
            stopped_reason=tx.stopped_reason if not authorized else None,
            remote_start_id=tx.remote_start_id,
            charging_state=ChargingState.SUSPENDED_EVSE
            if connected and ctl.state is EvseState.FAULT
            else None,
        )
        if tx.resetting:
            # B12.FR.04/08: the reset ends the transaction (ResetCommand, ImmediateReset)
            # and the energy transfer with it (chargingState EVConnected).
            activity = replace(
                activity,
                authorized=False,
                power_path_closed=False,
                energy_transfer=False,
                stopped_reason=StoppedReason.IMMEDIATE_RESET,
                charging_state=None,
            )
        flags = _flags(activity)
        if tx.last is None or _flags(tx.last) != flags:
            tx.last = activity
            self.client.submit(activity)

    # -- the token reader (chargepoint.adapters.token_auth.TokenSink) ----------------
    def active_token(self, evse_id: int) -> IdToken | None:
        tx = self._tx[evse_id]
        return tx.id_token if tx.remote_authorized or tx.token_authorized else None

    def token_authorized(self, evse_id: int, token: IdToken) -> None:
        """C01/E03: a card was accepted; TxStartPoint Authorized may start the transaction."""
        tx = self._tx[evse_id]
        tx.token_authorized, tx.id_token, tx.stopped_reason = True, token, None
        self._activity(evse_id)

    def ev_connection_timeout_s(self, evse_id: int) -> float | None:
        """E03: TxCtrlr.EVConnectionTimeOut as the CSMS set it (None: not loaded yet)."""
        return self.client.ev_connection_timeout_s()

    def token_ended(self, evse_id: int, reason: StoppedReason) -> None:
        """E07: the card (or its group) stopped the charge; E03: no EV came in time."""
        tx = self._tx[evse_id]
        tx.token_authorized = tx.remote_authorized = False
        tx.stopped_reason = reason
        self._activity(evse_id)

    def _status(self, evse_id: int, state: EvseState) -> None:
        if state is EvseState.FAULT:
            status = ConnectorStatus.FAULTED
        elif state is not EvseState.IDLE:
            status = ConnectorStatus.OCCUPIED
        elif not self._available.get(evse_id, True):
            status = ConnectorStatus.UNAVAILABLE
        else:
            status = ConnectorStatus.AVAILABLE
        self.client.submit(ConnectorStatusChanged(evse_id, 1, status))

    def _sample(self, evse_id: int, reading: MeterReading | None = None) -> MeterSample:
        runner = self.runners[evse_id]
        m = reading or runner.last_meter
        soc = self._ev_soc(evse_id) if self._ev_soc is not None else None
        if m is None:
            return MeterSample(evse_id, 0.0, 0.0, 0.0, 0.0, 0.0, soc)
        return MeterSample(
            evse_id,
            m.import_energy_wh,
            m.export_energy_wh,  # V2G: energy from the EV is the export register
            m.power_w,
            m.voltage_v,
            m.current_a,
            soc,
        )

    # -- CSMS -> station -------------------------------------------------------------
    async def command_loop(self) -> None:
        while True:
            command = await self.commands.get()
            log.info("CSMS command: %s", command)
            await self._carry_out(command)

    async def upload_loop(self) -> None:
        """Log uploads (GetLog, N01), one at a time; runs until cancelled."""
        if self._uploader is None:
            await asyncio.Event().wait()
        else:
            await self._uploader.run()

    async def firmware_loop(self) -> None:
        """Firmware downloads and installs (L01), one at a time; runs until cancelled."""
        if self._firmware is None:
            await asyncio.Event().wait()
        else:
            await self._firmware.run()

    async def _carry_out(self, command: StationCommand) -> None:
        match command:
            case DownloadFirmware() | InstallFirmware() | CancelFirmware():
                if self._firmware is not None:
                    self._firmware.submit(command)
                elif not isinstance(command, CancelFirmware):
                    status = (
                        "DownloadFailed"
                        if isinstance(command, DownloadFirmware)
                        else "InstallationFailed"
                    )
                    self.client.submit(FirmwareProgress(command.request_id, status))
            case RebootForFirmware(request_id=request_id):
                # L01: the new release is `current`; systemd starts it after this exit
                # (exit status 75, Restart=on-failure), which then confirms it at READY.
                log.warning("firmware request %d: restarting into the new release", request_id)
                self._request_stop()
            case UploadLog(request_id=request_id):
                if self._uploader is not None:
                    self._uploader.request(command)
                else:
                    self.client.submit(LogUploadProgress(request_id, "UploadFailure"))
            case RecordSecurityEvent() if self._logs is not None:
                await asyncio.to_thread(self._logs.record_security_event, command)
            case RemoteStart(evse_id=evse_id, id_token=id_token, remote_start_id=start_id):
                target = evse_id or next(iter(self.runners))
                if target in self.runners:
                    tx = self._tx[target]
                    tx.remote_authorized, tx.id_token, tx.remote_start_id = True, id_token, start_id
                    tx.stopped_reason = None
                    await self.runners[target].submit(StartCharging("remote"))
                    self._activity(target)
            case RemoteStop(evse_id=evse_id):
                if evse_id in self.runners:
                    tx = self._tx[evse_id]
                    tx.remote_authorized, tx.stopped_reason = False, StoppedReason.REMOTE
                    await self.runners[evse_id].submit(StopCharging("remote"))
                    self._activity(evse_id)
            case Deauthorize(evse_id=evse_id) if evse_id in self.runners:
                # E05: the CSMS refused the idToken: no more energy, the authorization
                # (card or remote start) is gone and the transaction says DeAuthorized.
                tx = self._tx[evse_id]
                tx.remote_authorized = tx.token_authorized = False
                tx.stopped_reason = StoppedReason.DE_AUTHORIZED
                await self.runners[evse_id].submit(StopCharging("deauthorized"))
                self._activity(evse_id)
            case SetAvailability(evse_id=evse_id, operative=operative):
                targets = list(self.runners) if evse_id is None else [evse_id]
                for target in (t for t in targets if t in self.runners):
                    if not operative and self.runners[target].sessions.active:
                        # G03.FR.05 / G04: answered Scheduled; applied when the session ends.
                        self._scheduled_inoperative.add(target)
                        continue
                    self._scheduled_inoperative.discard(target)
                    await self._set_available(target, operative=operative)
            case ResetRequested(kind=kind, evse_id=evse_id) if evse_id in self.runners:
                # B12: an EVSE reset re-initialises that EVSE only: its charge is
                # stopped and cleared faults go; OnIdle waits for the session to end
                # (answered Scheduled).  The OCPP core also sends one per EVSE with a
                # transaction before a station reset (Immediate).
                if kind is ResetKind.ON_IDLE and self.runners[evse_id].sessions.active:
                    self._scheduled_evse_reset.add(evse_id)
                    return
                self._scheduled_evse_reset.discard(evse_id)
                log.warning("evse %d: reset requested by the CSMS", evse_id)
                if self.runners[evse_id].controller.state is not EvseState.IDLE:
                    self._tx[evse_id].resetting = True
                    self._activity(evse_id)  # ends the transaction before anything else
                await self.runners[evse_id].submit(StopCharging("reset"))
                await self.runners[evse_id].submit(ClearFaults("csms reset"))
            case ResetRequested(kind=kind):
                # B11/B12: the OCPP core sends this once no transaction is left and their
                # Ended events are delivered (or stored, offline), with the boot reason
                # RemoteReset stored: restart now (systemd brings the service back).
                log.warning("reset (%s) requested by the CSMS: restarting", kind.value)
                for runner in self.runners.values():
                    await runner.submit(StopCharging("reset"))
                self._request_stop()
            case UnlockConnector(evse_id=evse_id) if evse_id in self.runners:
                # F05: a running charge is stopped first; the controller releases
                # the cable lock once the power path is open (state CONNECTED).
                log.info("evse %d: unlock requested by the CSMS", evse_id)
                await self.runners[evse_id].submit(StopCharging("unlock"))
            case ChargingLimit(evse_id=evse_id) if evse_id in self.runners:
                await self._apply_limit(command)
            case ChargingNeedsAnswer(evse_id=evse_id, status=status):
                server = self._v2g.get(evse_id)
                if server is not None:
                    # K15: Accepted/Processing: a TxProfile follows; else offer what is known
                    await server.csms_needs_answered(status in ("Accepted", "Processing"))

    async def _apply_limit(self, limit: ChargingLimit) -> None:
        """The composite schedule's limit reaches the power path: the PWM offer (IEC
        61851 basic charging; below 6 A the controller pauses) and the power arbiter
        of the ISO 15118-20 session (the ``csms`` source)."""
        runner = self.runners[limit.evse_id]
        if not runner.controller.settings.has_power_stage:  # AC: the PWM offer
            current = runner.controller.settings.max_current_a
            if limit.current_a is not None:
                current = min(current, limit.current_a)
            await runner.submit(SetCurrentLimit(current))
        server = self._v2g.get(limit.evse_id)
        if server is not None:
            server.arbiter.grid = _grid(limit)
            server.arbiter.set_source(
                CSMS_SOURCE,
                PowerLimits(
                    max_charge_power_w=INF if limit.power_w is None else limit.power_w,
                    max_discharge_power_w=(
                        INF if limit.discharge_power_w is None else limit.discharge_power_w
                    ),
                ),
            )
            await server.limits_changed()

    async def _set_available(self, evse_id: int, *, operative: bool) -> None:
        self._available[evse_id] = operative
        await self.runners[evse_id].submit(SetAvailable(operative))
        self._status(evse_id, self.runners[evse_id].controller.state)


def _flags(a: EvseActivity) -> tuple[object, ...]:
    """What makes a snapshot different (the meter reading alone does not)."""
    return (
        a.ev_connected,
        a.authorized,
        a.power_path_closed,
        a.energy_transfer,
        a.id_token,
        a.stopped_reason,
        a.remote_start_id,
        a.charging_state,
    )


def _grid(limit: ChargingLimit) -> GridSchedule:
    """The CSMS's limits ahead for the session's Scheduled-mode offer (W)."""
    return GridSchedule(
        tuple(
            GridStep(
                p.start_utc_s,
                INF if p.power_w is None else p.power_w,
                INF if p.discharge_power_w is None else p.discharge_power_w,
            )
            for p in limit.schedule
        )
    )


def _needs_event(evse_id: int, needs: EvNeeds, utc_now: float) -> EvChargingNeeds:
    departure = needs.departure_time_s
    return EvChargingNeeds(
        evse_id=evse_id,
        dc=needs.dc,
        bpt=needs.bpt,
        control_mode=needs.control_mode,
        departure_time_utc_s=None if departure is None else utc_now + departure,
        target_energy_wh=needs.target_energy_wh,
        min_energy_wh=needs.min_energy_wh,
        max_energy_wh=needs.max_energy_wh,
        target_soc_pct=needs.target_soc_pct,
        max_charge_power_w=needs.max_charge_power_w,
        min_charge_power_w=needs.min_charge_power_w,
        max_charge_current_a=needs.max_charge_current_a,
        min_charge_current_a=needs.min_charge_current_a,
        max_voltage_v=needs.max_voltage_v,
        min_voltage_v=needs.min_voltage_v,
        max_discharge_power_w=needs.max_discharge_power_w,
        min_discharge_power_w=needs.min_discharge_power_w,
        max_discharge_current_a=needs.max_discharge_current_a,
        min_discharge_current_a=needs.min_discharge_current_a,
        max_schedule_tuples=needs.max_schedule_tuples,
    )


def _schedule_event(evse_id: int, chosen: EvScheduleChosen) -> EvChargingSchedule:
    discharge = chosen.discharge_limits_w
    return EvChargingSchedule(
        evse_id=evse_id,
        time_base_utc_s=float(chosen.time_anchor_s),
        tuple_id=chosen.tuple_id,
        periods=tuple(
            EvSchedulePeriod(
                start_s=start,
                limit_w=max(0.0, power),
                discharge_limit_w=discharge[i] if i < len(discharge) else None,
            )
            for i, (start, power) in enumerate(chosen.periods)
        ),
    )
