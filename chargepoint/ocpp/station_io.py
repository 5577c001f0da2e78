"""What the rest of the station and the OCPP side say to each other.

Events flow from the runtime into the OCPP core
(:meth:`chargepoint.ocpp.station.OcppStation.station_event`); commands flow
from the OCPP core to the runtime (the adapter hands them to the callback the
runtime registered).  Everything here is a frozen dataclass or an ``Enum``;
units are in the field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ConnectorStatus(Enum):
    """ConnectorStatusEnumType (OCPP 2.0.1 Part 2 §3)."""

    AVAILABLE = "Available"
    OCCUPIED = "Occupied"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StoppedReason(Enum):
    """ReasonEnumType: why a transaction ended (subset the runtime can produce)."""

    LOCAL = "Local"
    REMOTE = "Remote"
    EV_DISCONNECTED = "EVDisconnected"
    DE_AUTHORIZED = "DeAuthorized"
    EMERGENCY_STOP = "EmergencyStop"
    ENERGY_LIMIT_REACHED = "EnergyLimitReached"
    GROUND_FAULT = "GroundFault"
    IMMEDIATE_RESET = "ImmediateReset"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    SOC_LIMIT_REACHED = "SOCLimitReached"
    STOPPED_BY_EV = "StoppedByEV"
    TIME_LIMIT_REACHED = "TimeLimitReached"
    TIMEOUT = "Timeout"


class ChargingState(Enum):
    """ChargingStateEnumType (OCPP 2.0.1 Part 2 §3): transactionInfo.chargingState."""

    CHARGING = "Charging"
    EV_CONNECTED = "EVConnected"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    IDLE = "Idle"


class ResetKind(Enum):
    IMMEDIATE = "Immediate"
    ON_IDLE = "OnIdle"


@dataclass(frozen=True)
class EvseRating:
    """The electrical rating of one EVSE, for smart charging: unit conversion (W = A x
    V x phases) and what a composite schedule reports where no profile limits."""

    dc: bool = False
    #: nominal phase voltage (AC) or the nominal DC voltage
    voltage_v: float = 230.0
    #: AC phases (1 for DC)
    phases: int = 3
    max_current_a: float = 32.0
    max_power_w: float | None = None
    #: ConnectorEnumType of connector 1, 2, ... (the configuration's ``type``)
    connector_types: tuple[str, ...] = ()

    @property
    def rated_power_w(self) -> float:
        """The most this EVSE can deliver: current x voltage x phases, capped by
        ``max_power_w``."""
        power = self.max_current_a * self.voltage_v * (1 if self.dc else self.phases)
        return power if self.max_power_w is None else min(power, self.max_power_w)


@dataclass(frozen=True)
class IdToken:
    """IdTokenType: ``kind`` is the IdTokenEnumType (ISO14443, eMAID, Central, ...)."""

    id_token: str
    kind: str = "ISO14443"


# ----------------------------------------------------------------- events in
@dataclass(frozen=True)
class ConnectorStatusChanged:
    evse_id: int
    connector_id: int
    status: ConnectorStatus


@dataclass(frozen=True)
class MeterSample:
    """One reading of the EVSE meter; ``power_w`` < 0 means discharging (V2G)."""

    evse_id: int
    import_wh: float
    export_wh: float
    power_w: float
    voltage_v: float
    current_a: float
    soc_pct: float | None = None


@dataclass(frozen=True)
class SessionStarted:
    """A transaction started on ``evse_id``/``connector_id`` (per TxStartPoint)."""

    evse_id: int
    connector_id: int
    id_token: IdToken | None
    meter: MeterSample
    remote_start_id: int | None = None


@dataclass(frozen=True)
class SessionEnded:
    evse_id: int
    reason: StoppedReason
    meter: MeterSample
    #: sent at start-up for whatever transaction a previous run left open; usually none
    interrupted: bool = False


@dataclass(frozen=True)
class EvseActivity:
    """A full snapshot of what is going on at one EVSE, sent on every change of a flag.

    The core starts and ends the transaction by TxCtrlr.TxStartPoint / TxStopPoint
    (E01/E06) and reports charging-state changes (E02).  Flags:

    * ``ev_connected``: the cable is plugged in at both ends (IEC 61851 state B/C/D);
    * ``authorized``: the EV driver (or the CSMS, or PnC) authorized charging; it goes
      back to False when authorization ends (stop swipe, RemoteStop, deauthorization);
    * ``power_path_closed``: the contactors are closed;
    * ``energy_transfer``: energy flows (in either direction);
    * ``parking_bay_occupied`` / ``data_signed``: for the ParkingBayOccupancy and
      DataSigned points, if the station has such a sensor / a signing meter.

    ``id_token`` is the authorized token (sent with the event that reports the
    authorization); ``remote_start_id`` marks an authorization by RequestStartTransaction.
    ``stopped_reason`` explains a flag that went False (e.g. ``DE_AUTHORIZED``,
    ``REMOTE``, ``STOPPED_BY_EV``); without it the core picks one per point.
    ``charging_state`` overrides the charging state the core derives from the flags
    (e.g. ``SUSPENDED_EVSE`` when the station withholds power).
    """

    evse_id: int
    connector_id: int
    ev_connected: bool
    authorized: bool
    power_path_closed: bool
    energy_transfer: bool
    meter: MeterSample
    id_token: IdToken | None = None
    stopped_reason: StoppedReason | None = None
    remote_start_id: int | None = None
    parking_bay_occupied: bool = False
    data_signed: bool = False
    charging_state: ChargingState | None = None


@dataclass(frozen=True)
class FaultRaised:
    """A problem on the station (``evse_id`` None) or on one EVSE."""

    evse_id: int | None
    code: str
    description: str


@dataclass(frozen=True)
class FaultCleared:
    evse_id: int | None
    code: str


@dataclass(frozen=True)
class SecurityEventOccurred:
    """A04: a security event the runtime noticed, e.g. ``TamperDetectionActivated``,
    ``StartupOfTheDevice``, ``ResetOrReboot`` (SecurityEventEnumType values)."""

    kind: str
    tech_info: str = ""


@dataclass(frozen=True)
class EvChargingNeeds:
    """An ISO 15118-20 car's charging needs, after ScheduleExchangeReq (OCPP K15/K17:
    NotifyEVChargingNeeds).  Magnitudes from the EV's ChargeParameterDiscovery and
    ScheduleExchange requests; ``None`` where the EV did not say.  ``bpt``: a
    bidirectional service was selected (discharge fields then apply)."""

    evse_id: int
    dc: bool
    bpt: bool
    control_mode: str  # "scheduled" | "dynamic"
    departure_time_utc_s: float | None = None
    target_energy_wh: float | None = None
    min_energy_wh: float | None = None
    max_energy_wh: float | None = None
    target_soc_pct: int | None = None
    present_soc_pct: int | None = None
    max_charge_power_w: float | None = None
    min_charge_power_w: float | None = None
    max_charge_current_a: float | None = None
    min_charge_current_a: float | None = None
    max_voltage_v: float | None = None
    min_voltage_v: float | None = None
    max_discharge_power_w: float | None = None
    min_discharge_power_w: float | None = None
    max_discharge_current_a: float | None = None
    min_discharge_current_a: float | None = None
    phases: int | None = None  # AC: phases the session uses
    max_schedule_tuples: int | None = None


@dataclass(frozen=True)
class EvSchedulePeriod:
    """One period of the schedule the EV picked: from ``start_s`` after the time base."""

    start_s: int
    limit_w: float  # charging power limit (>= 0)
    discharge_limit_w: float | None = None  # magnitude the EV may feed back (V2X)


@dataclass(frozen=True)
class EvChargingSchedule:
    """The ScheduleTuple an ISO 15118-20 car picked in PowerDelivery(Start) (OCPP K15/K16:
    NotifyEVChargingSchedule)."""

    evse_id: int
    time_base_utc_s: float
    tuple_id: int
    periods: tuple[EvSchedulePeriod, ...]


@dataclass(frozen=True)
class LogUploadProgress:
    """How the upload of GetLog ``request_id`` goes (N01): an UploadLogStatusEnumType
    value: Uploading, then Uploaded, UploadFailure, BadMessage, PermissionDenied or
    NotSupportedOperation."""

    request_id: int
    status: str


@dataclass(frozen=True)
class FirmwareProgress:
    """How a firmware update (L01) the core asked for is going, from the runtime.

    ``status`` is a FirmwareStatusEnumType value the runtime reaches: Downloaded
    (``path``: the file), DownloadFailed (after the retries), DownloadPaused,
    SignatureVerified, InvalidSignature, InstallRebooting (``version``: the release
    switched to, started at the next boot), InstallationFailed,
    InstallVerificationFailed.  ``detail`` goes to the log and security events.
    """

    request_id: int
    status: str
    path: str | None = None
    version: str | None = None
    detail: str = ""


StationEvent = (
    ConnectorStatusChanged
    | MeterSample
    | SessionStarted
    | SessionEnded
    | EvseActivity
    | FaultRaised
    | FaultCleared
    | SecurityEventOccurred
    | EvChargingNeeds
    | EvChargingSchedule
    | FirmwareProgress
    | LogUploadProgress
)


# -------------------------------------------------------------- commands out
@dataclass(frozen=True)
class RemoteStart:
    """RequestStartTransaction (F01): start charging for ``id_token``."""

    evse_id: int | None
    id_token: IdToken
    remote_start_id: int


@dataclass(frozen=True)
class RemoteStop:
    """RequestStopTransaction (F03)."""

    transaction_id: str
    evse_id: int


@dataclass(frozen=True)
class SetAvailability:
    """ChangeAvailability (G03/G04): ``evse_id`` None = the whole station."""

    evse_id: int | None
    connector_id: int | None
    operative: bool


@dataclass(frozen=True)
class ResetRequested:
    """Reset (B11/B12): the runtime ends sessions as the kind demands, then restarts."""

    kind: ResetKind
    evse_id: int | None = None


@dataclass(frozen=True)
class UnlockConnector:
    """UnlockConnector (F05)."""

    evse_id: int
    connector_id: int


@dataclass(frozen=True)
class ChargingLimit:
    """Smart charging (K): what the composite schedule allows on ``evse_id`` from now on.

    Magnitudes; ``None`` means the CSMS sets no limit on that quantity. AC EVSEs get
    ``current_a`` (per phase: the IEC 61851 PWM offer) and ``power_w`` (an ISO 15118
    AC session), converted with the nominal voltage and phases; DC EVSEs get
    ``power_w`` only (an ampere profile is converted at the nominal DC voltage).
    The discharge limits bound what may flow from the EV (V2X).
    """

    evse_id: int
    current_a: float | None
    power_w: float | None
    discharge_power_w: float | None = None
    number_phases: int | None = None
    #: the composite schedule ahead, in W (what an ISO 15118-20 Scheduled session
    #: offers); recomputed when the profiles or the transaction change, not at
    #: every period boundary.  Empty: no profile limits this EVSE.
    schedule: tuple[SchedulePeriodW, ...] = ()


@dataclass(frozen=True)
class SchedulePeriodW:
    """From ``start_utc_s`` on (to the next period's start), at most ``power_w``
    to the EV and ``discharge_power_w`` from it; ``None``: not limited."""

    start_utc_s: float
    power_w: float | None
    discharge_power_w: float | None = None


@dataclass(frozen=True)
class ChargingNeedsAnswer:
    """The CSMS's answer to NotifyEVChargingNeeds (K15): ``status`` is the
    NotifyEVChargingNeedsStatusEnumType value (Accepted, Rejected, Processing,
    2.1 NoChargingProfile), or "NotSent" when it could not be asked (offline,
    smart charging disabled, CALLERROR, timeout).  Accepted/Processing: a
    TxProfile is coming, so the SECC may hold ScheduleExchange Ongoing for it."""

    evse_id: int
    status: str


@dataclass(frozen=True)
class UploadLog:
    """GetLog (N01): collect the ``log_type`` log (DiagnosticsLog, SecurityLog) from
    ``oldest_utc_s`` to ``latest_utc_s`` (None: unbounded) into ``filename`` and upload
    it to ``url``, retrying ``retries`` times ``retry_interval_s`` apart; report each
    step as :class:`LogUploadProgress`.  Replaces any upload still running."""

    request_id: int
    log_type: str
    url: str = field(repr=False)  # may carry user:password: kept out of log lines
    filename: str
    oldest_utc_s: float | None
    latest_utc_s: float | None
    retries: int
    retry_interval_s: int


@dataclass(frozen=True)
class RecordSecurityEvent:
    """A security event (A04) for the station's own security log (N01 SecurityLog);
    ``timestamp`` is the OCPP timestamp the SecurityEventNotification carries."""

    kind: str
    timestamp: str
    tech_info: str = ""


@dataclass(frozen=True)
class DownloadFirmware:
    """UpdateFirmware (L01): download ``url`` (at most ``retries`` more attempts,
    ``retry_interval_s`` apart) and check ``signature`` (base64, SHA-256) with the
    signing certificate (PEM); report Downloaded, then SignatureVerified or
    InvalidSignature, or DownloadFailed."""

    request_id: int
    url: str
    retries: int
    retry_interval_s: int
    signing_certificate: str
    signature: str


@dataclass(frozen=True)
class InstallFirmware:
    """Install the verified firmware at ``path`` beside the running one and switch to
    it; report InstallRebooting (with the version) or InstallationFailed /
    InstallVerificationFailed."""

    request_id: int
    path: str


@dataclass(frozen=True)
class CancelFirmware:
    """A newer UpdateFirmware cancelled request ``request_id`` (L01.FR.24): stop its
    download or install; report nothing more for it."""

    request_id: int


@dataclass(frozen=True)
class RebootForFirmware:
    """The switched release starts at the next boot: restart the service now (the
    InstallRebooting notification and the pending request are stored already)."""

    request_id: int


@dataclass(frozen=True)
class Deauthorize:
    """The CSMS refused the idToken of a running transaction (E05, C12: a
    TransactionEventResponse whose idTokenInfo is not Accepted, with
    TxCtrlr.StopTxOnInvalidId, or MaxEnergyOnInvalidId reached): stop the charge
    and withdraw the authorization (report ``stopped_reason`` DE_AUTHORIZED)."""

    evse_id: int
    transaction_id: str


StationCommand = (
    RemoteStart
    | RemoteStop
    | Deauthorize
    | SetAvailability
    | ResetRequested
    | UnlockConnector
    | ChargingLimit
    | ChargingNeedsAnswer
    | UploadLog
    | RecordSecurityEvent
    | DownloadFirmware
    | InstallFirmware
    | CancelFirmware
    | RebootForFirmware
)
