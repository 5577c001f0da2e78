"""Station configuration: TOML text validated into frozen pydantic models.

Why this shape:

* Every model forbids unknown keys, so a misspelt key is an error instead of a
  silently ignored setting.
* Numbers and booleans are strict: ``max_current_a = "32"`` or
  ``autostart = 1`` in a TOML file is a mistake worth reporting.
* Validation reports *every* problem at once as a :class:`ConfigError` with
  human key paths (``evse[0].pilot_board.port``), so an installer fixes a file in
  one round trip.
* Nothing is discovered implicitly: the caller passes the path or the text.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from chargepoint import __version__
from chargepoint.errors import ConfigError
from chargepoint.ocpp.standard_variables import CONNECTOR_TYPES
from chargepoint.safety.limits import MIN_FAULT_PULSE_F_S, SafetyLimits

__all__ = [
    "CanPowerStageConfig",
    "Config",
    "ConnectorConfig",
    "CsmsConfig",
    "EvseConfig",
    "IsolationMonitorConfig",
    "MeterConfig",
    "PilotBoardConfig",
    "Pn532TokenReaderConfig",
    "PowerStageConfig",
    "RuntimeConfig",
    "SafetyConfig",
    "Secret",
    "SerialPilotBoardConfig",
    "SimEvConfig",
    "SimIsolationMonitorConfig",
    "SimMeterConfig",
    "SimPilotBoardConfig",
    "SimPowerStageConfig",
    "SimTokenReaderConfig",
    "StationConfig",
    "TokenReaderConfig",
    "format_problems",
    "load_config",
    "parse_config",
]

# --------------------------------------------------------------------------- helpers

# Strict scalars: TOML has real types, so a quoted number or a 0/1 boolean is a typo.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


def _require_absolute(path: Path) -> Path:
    """A service's working directory is not something to rely on."""
    if not path.is_absolute():
        raise ValueError(f"must be an absolute path, got {str(path)!r}")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_require_absolute)]


def _matching(pattern: str, explanation: str) -> AfterValidator:
    """A regex check whose error says what is wanted, not the regex itself."""
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(f"{explanation}, got {text!r}")
        return text

    return AfterValidator(check)


def _require_one_or_three(phases: int) -> int:
    if phases not in (1, 3):
        raise ValueError(f"must be 1 or 3, got {phases}")
    return phases


Phases = Annotated[int, Strict(), AfterValidator(_require_one_or_three)]

_CONFIG_RULE = "config_rule"


def _fail(problems: list[tuple[tuple[str | int, ...], str, object]], title: str) -> None:
    """Raise all cross-field problems of one model at once, each at its own key.

    A ``ValidationError`` raised inside a validator keeps its locations (pydantic
    prefixes them with the enclosing path), which is how cross-field checks get
    precise key paths such as ``evse[1].id`` rather than ``evse``.
    """
    if not problems:
        return
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError(_CONFIG_RULE, "{message}", {"message": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in problems
        ],
    )


# Plausible physical ranges: anything beyond is a typo, not a charger.
MAX_CURRENT_A = 3_000.0  # MCS (IEC 61851-23-3): the largest conductive charging current
MAX_POWER_W = 3_750_000.0  # MCS: 1,250 V x 3,000 A


class _Model(BaseModel):
    """Common policy: immutable, unknown keys rejected, no NaN/inf sneaking in."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def __eq__(self, other: object) -> bool:
        # Field values only: where a model was read from (private bookkeeping
        # such as the source file name) does not change what it configures.
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))


# --------------------------------------------------------------------------- secrets


class Secret(_Model):
    """A credential given as exactly one of ``{ file = "/path" }``,
    ``{ env = "NAME" }`` or ``{ value = "..." }``.

    Resolution is deferred to :meth:`resolve` so a config file can be validated
    on a machine (CI, a laptop) that lacks the secret itself.
    """

    file: AbsolutePath | None = None
    env: (
        Annotated[
            str,
            _matching(r"[A-Za-z_][A-Za-z0-9_]*", "must be an environment variable name"),
        ]
        | None
    ) = None
    value: SecretStr | None = None

    # Where the secret sits in the file; bound by Config so errors can point at it.
    _key_path: str = PrivateAttr(default="<secret>")
    _source: str = PrivateAttr(default="<config>")

    @model_validator(mode="before")
    @classmethod
    def _explain_bare_value(cls, data: Any) -> Any:
        if not isinstance(data, dict | Secret):
            raise ValueError(
                'expected a table: { file = "/path" }, { env = "NAME" } or { value = "..." }'
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("file", "env", "value") if getattr(self, name) is not None]
        if len(given) != 1:
            if given:
                message = f"give only one of file, env, value (got {', '.join(given)})"
            else:
                message = "give exactly one of file, env or value"
            _fail([((), message, None)], type(self).__name__)
        if self.value is not None and not self.value.get_secret_value():
            _fail([(("value",), "must not be empty", None)], type(self).__name__)
        return self

    @property
    def is_inline(self) -> bool:
        """Inline secrets work but end up in backups and bug reports."""
        return self.value is not None

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """Return the secret text; :class:`ConfigError` at this key path if unavailable."""
        if self.value is not None:
            return self.value.get_secret_value()
        if self.env is not None:
            env = os.environ if environ is None else environ
            text = env.get(self.env)
            if text is None:
                raise self._error(f"environment variable {self.env} is not set")
            if not text:
                raise self._error(f"environment variable {self.env} is empty")
            return text
        path = self.file
        if path is None:  # pragma: no cover - excluded by _exactly_one
            raise AssertionError("secret without a source passed validation")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise self._error(f"cannot read secret file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise self._error(f"secret file {path} is not UTF-8 text") from exc
        # Files written by `echo` or an editor end in one newline that is not part of it.
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            raise self._error(f"secret file {path} is empty")
        return text

    def _error(self, message: str) -> ConfigError:
        return ConfigError(self._source, [(self._key_path, message)])

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Only the source that is set; SecretStr already masks an inline value.
        for name, value in super().__repr_args__():
            if value is not None:
                yield name, value


def _path_as_secret_file(data: Any) -> Any:
    """``client_key = "/etc/.../key.pem"`` is shorthand for ``{ file = ... }``."""
    if isinstance(data, str):
        return {"file": data}
    return data


# --------------------------------------------------------------------------- station


class StationConfig(_Model):
    """Identity reported to the CSMS (BootNotification) and used as the OCPP-J id."""

    # OCPP-J: the identity is the last URL path segment and the basic-auth user
    # name, so ':' is forbidden and 48 characters is the limit.
    id: Annotated[
        str,
        Field(min_length=1, max_length=48),
        _matching(r"[^:\s]+", "must not contain ':' or whitespace (OCPP-J identity)"),
    ]
    # Lengths follow OCPP ChargingStationType so a BootNotification cannot be rejected.
    vendor: Annotated[str, Field(min_length=1, max_length=50)]
    model: Annotated[str, Field(min_length=1, max_length=20)]
    serial_number: Annotated[str, Field(min_length=1, max_length=25)] | None = None
    firmware_version: Annotated[str, Field(min_length=1, max_length=50)] = __version__


# --------------------------------------------------------------------------- HAL backends


class SimPilotBoardConfig(_Model):
    """Simulated board on the far side of the real serial protocol."""

    backend: Literal["sim"]
    link: Literal["pty", "tcp"] = "pty"  # tcp where ptys are unavailable


def _check_serial_port(port: str) -> str:
    if port.startswith("/") or re.match(r"^[a-z0-9]+://\S+$", port):
        return port
    raise ValueError(
        f"expected a device path such as /dev/ttyAMA0 or a pyserial URL such as "
        f"socket://host:port, got {port!r}"
    )


class SerialPilotBoardConfig(_Model):
    """Real control-pilot board on a UART (or a pyserial URL for bench setups)."""

    backend: Literal["serial"]
    port: Annotated[str, AfterValidator(_check_serial_port)]
    baudrate: Annotated[Int, Field(gt=0)] = 115_200


PilotBoardConfig = Annotated[
    SimPilotBoardConfig | SerialPilotBoardConfig, Field(discriminator="backend")
]


class SimPowerStageConfig(_Model):
    """Simulated bidirectional DC module; the defaults model a 30 kW V2G unit."""

    backend: Literal["sim"]
    min_voltage_v: Annotated[Float, Field(ge=0, le=1500)] = 150.0
    max_voltage_v: Annotated[Float, Field(gt=0, le=1500)] = 920.0
    max_export_current_a: Annotated[Float, Field(gt=0, le=MAX_CURRENT_A)] = 100.0
    max_export_power_w: Annotated[Float, Field(gt=0, le=MAX_POWER_W)] = 30_000.0
    max_import_current_a: Annotated[Float, Field(ge=0, le=MAX_CURRENT_A)] = 100.0
    max_import_power_w: Annotated[Float, Field(ge=0, le=MAX_POWER_W)] = 30_000.0
    bidirectional: Bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.min_voltage_v >= self.max_voltage_v:
            problems.append(
                (
                    ("min_voltage_v",),
                    f"must be below max_voltage_v ({self.max_voltage_v:g} V)",
                    self.min_voltage_v,
                )
            )
        if not self.bidirectional:
            # The HAL reports 0 import capability for unidirectional modules.
            for name in ("max_import_current_a", "max_import_power_w"):
                if getattr(self, name) != 0:
                    problems.append(
                        ((name,), "must be 0 when bidirectional = false", getattr(self, name))
                    )
        _fail(problems, type(self).__name__)
        return self


CanInterface = Literal[
    "canalystii",
    "cantact",
    "etas",
    "gs_usb",
    "iscan",
    "ixxat",
    "kvaser",
    "neousys",
    "neovi",
    "nican",
    "nixnet",
    "pcan",
    "robotell",
    "seeedstudio",
    "serial",
    "slcan",
    "socketcan",
    "socketcand",
    "systec",
    "udp_multicast",
    "usb2can",
    "vector",
    "virtual",
]


class CanPowerStageConfig(_Model):
    """Real power module on a CAN bus (python-can interface names)."""

    backend: Literal["can"]
    interface: CanInterface
    channel: Annotated[str, Field(min_length=1)]  # e.g. "can0" for socketcan
    bitrate: Annotated[Int, Field(gt=0, le=1_000_000)] = 500_000  # classical CAN tops at 1 Mbit/s
    node_id: Annotated[Int, Field(ge=0, le=63)]
    # set_mode(OFF) returns only once |current| is below this, so contactors
    # never open under load.
    off_current_threshold_a: Annotated[Float, Field(gt=0, le=10)] = 1.0


PowerStageConfig = Annotated[
    SimPowerStageConfig | CanPowerStageConfig, Field(discriminator="backend")
]


class SimIsolationMonitorConfig(_Model):
    """Simulated IMD reading the plant's insulation resistance. ``link = "modbus"``:
    an isoCHA425HV on a pty, reached by the real Modbus driver."""

    backend: Literal["sim"]
    link: Literal["direct", "modbus"] = "direct"


class _ModbusSerial(_Model):
    """An RS-485 Modbus RTU line (one device per serial port)."""

    port: Annotated[str, AfterValidator(_check_serial_port)]
    baudrate: Annotated[Int, Field(gt=0, le=921_600)]
    parity: Literal["N", "E", "O"]
    stopbits: Literal[1, 2] = 1
    unit_id: Annotated[Int, Field(ge=1, le=247)]  # Modbus RTU slave addresses
    timeout_s: Annotated[Float, Field(gt=0, le=5)]


class ModbusIsolationMonitorConfig(_ModbusSerial):
    """A Bender isoCHA425HV on Modbus RTU (docs/modbus-devices.md)."""

    backend: Literal["modbus"]
    model: Literal["isocha425hv"] = "isocha425hv"
    baudrate: Annotated[Int, Field(gt=0, le=921_600)] = 19_200
    parity: Literal["N", "E", "O"] = "E"
    unit_id: Annotated[Int, Field(ge=1, le=247)] = 3
    timeout_s: Annotated[Float, Field(gt=0, le=5)] = 1.0
    # The device's own alarm thresholds, set on start (IEC 61851-23: 500 / 100 ohm/V at 1 kV)
    prewarning_kohm: Annotated[Int, Field(ge=1, le=10_000)] = 500
    alarm_kohm: Annotated[Int, Field(ge=1, le=10_000)] = 100

    @model_validator(mode="after")
    def _thresholds(self) -> Self:
        if self.prewarning_kohm <= self.alarm_kohm:
            _fail(
                [(("prewarning_kohm",), "must be above alarm_kohm", self.prewarning_kohm)],
                type(self).__name__,
            )
        return self


IsolationMonitorConfig = Annotated[
    SimIsolationMonitorConfig | ModbusIsolationMonitorConfig, Field(discriminator="backend")
]


class SimMeterConfig(_Model):
    """Simulated meter integrating the plant's power into its registers. ``link =
    "modbus"`` (AC only): an SDM630 on a pty, reached by the real Modbus driver."""

    backend: Literal["sim"]
    link: Literal["direct", "modbus"] = "direct"
    initial_import_energy_wh: Annotated[Float, Field(ge=0)] = 0.0
    initial_export_energy_wh: Annotated[Float, Field(ge=0)] = 0.0


class ModbusMeterConfig(_ModbusSerial):
    """An Eastron SDM630 on Modbus RTU (docs/modbus-devices.md)."""

    backend: Literal["modbus"]
    model: Literal["sdm630"] = "sdm630"
    baudrate: Annotated[Int, Field(gt=0, le=921_600)] = 9_600
    parity: Literal["N", "E", "O"] = "N"
    unit_id: Annotated[Int, Field(ge=1, le=247)] = 1
    timeout_s: Annotated[Float, Field(gt=0, le=5)] = 0.5
    # true when the meter is wired so that energy to the EV counts as its export
    reverse_direction: Bool = False


MeterConfig = Annotated[SimMeterConfig | ModbusMeterConfig, Field(discriminator="backend")]


# --------------------------------------------------------------------------- token reader


class SimTokenReaderConfig(_Model):
    """A simulated PN532 on a pty, read by the real driver; ``chargepoint sim tap UID``
    holds a card over it."""

    backend: Literal["sim"]


class Pn532TokenReaderConfig(_Model):
    """An NXP PN532 RFID/NFC reader on a UART (HSU), reading ISO/IEC 14443 Type A UIDs."""

    backend: Literal["pn532"]
    port: Annotated[str, AfterValidator(_check_serial_port)]
    baudrate: Annotated[Int, Field(gt=0, le=921_600)] = 115_200  # the PN532's HSU default
    # How often the field is scanned for a card; a tap lasts about half a second.
    poll_interval_s: Annotated[Float, Field(ge=0.05, le=2)] = 0.25


TokenReaderConfig = Annotated[
    SimTokenReaderConfig | Pn532TokenReaderConfig, Field(discriminator="backend")
]


# --------------------------------------------------------------------------- PLC (ISO 15118-3)


class _PlcCommon(_Model):
    """SLAC settings shared by every PLC backend (ISO 15118-3 clause 9)."""

    # TT_EVSE_SLAC_init: CP B -> first CM_SLAC_PARM.REQ; 20..50 s [V2G3-M06-07]
    slac_init_s: Annotated[Float, Field(ge=20, le=50)] = 40.0
    # E/F wake-up step when no car asks for SLAC; None: AC EVSEs only (5 % PWM) [V2G3-M06-07]
    ef_wakeup: Bool | None = None
    # False: modems without VS_PL_LINK_STATUS (link ready at CM_SLAC_MATCH.CNF)
    confirm_join: Bool = True


class PacketPlcConfig(_PlcCommon):
    """A HomePlug Green PHY modem on a network interface (``eth1`` for a QCA7000 on
    ``qcaspi``): SLAC over an AF_PACKET socket (needs CAP_NET_RAW), then SDP and the
    V2G server on the interface's IPv6 link-local address."""

    backend: Literal["packet"]
    interface: Annotated[str, Field(min_length=1, max_length=15)]


class SimPlcConfig(_PlcCommon):
    """A simulated modem, power line and car SLAC stack on the far side of a frame
    pipe, driven by the real driver; IPv6 then runs on ``[iso15118].interface``."""

    backend: Literal["sim"]


PlcConfig = Annotated[PacketPlcConfig | SimPlcConfig, Field(discriminator="backend")]


# --------------------------------------------------------------------------- EVSE

# OCPP 2.0.1 ConnectorEnumType (the device model's list) plus a few OCPP 2.1
# additions. Others only warn: OCPP 2.1 made the field an open string.
KNOWN_CONNECTOR_TYPES = frozenset(CONNECTOR_TYPES) | {"cChaoJi", "cGBT", "cMCS", "cNACS"}


class ConnectorConfig(_Model):
    """One physical connector of an EVSE (``[[evse.connector]]``)."""

    id: Annotated[Int, Field(ge=1, le=99)]
    # OCPP connector type: 'c' prefix = captive cable, 's' prefix = socket outlet.
    type: Annotated[
        str,
        _matching(r"[A-Za-z0-9-]{1,20}", "must be an OCPP connector type such as 'sType2'"),
    ]
    tethered: Bool  # tethered cables have no lock and no PP ampacity to read
    max_current_a: Annotated[Float, Field(gt=0, le=MAX_CURRENT_A)] | None = None

    @model_validator(mode="after")
    def _type_matches_cable(self) -> Self:
        """OCPP encodes cable vs socket in the type name; a mismatch is a typo."""
        if self.type in KNOWN_CONNECTOR_TYPES:
            captive = self.type.startswith("c")
            socket = self.type.startswith("s")
            if captive and not self.tethered:
                _fail(
                    [(("tethered",), f"type {self.type!r} is a captive cable: set true", False)],
                    type(self).__name__,
                )
            if socket and self.tethered:
                _fail(
                    [(("tethered",), f"type {self.type!r} is a socket outlet: set false", True)],
                    type(self).__name__,
                )
        return self


# IEC 61851-1 PWM encodes 6 A .. 80 A.
AC_MIN_CURRENT_A = 6.0
AC_MAX_CURRENT_A = 80.0


class EvseConfig(_Model):
    """One EVSE (``[[evse]]``): what can charge one vehicle at a time."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    id: Annotated[Int, Field(ge=1, le=999)]  # OCPP evseId; a station has a handful
    kind: Literal["ac", "dc"]
    phases: Phases | None = None  # AC only
    # AC: line-to-neutral RMS supply. DC: rated output (the power stage reports its range).
    nominal_voltage_v: Annotated[Float, Field(gt=0, le=1500)]
    # AC: per phase (6..80 A, checked below); DC up to MCS (3,000 A, 3.75 MW)
    max_current_a: Annotated[Float, Field(gt=0, le=MAX_CURRENT_A)]
    max_power_w: Annotated[Float, Field(gt=0, le=MAX_POWER_W)] | None = None  # None: by current
    ventilation: Bool = False  # may state D (ventilation required) be served?
    # Offer PWM without authorization (free vend) until OCPP authorization exists.
    autostart: Bool = True
    connectors: Annotated[tuple[ConnectorConfig, ...], Field(min_length=1, alias="connector")]
    pilot_board: PilotBoardConfig
    power_stage: PowerStageConfig | None = None  # DC only
    isolation_monitor: IsolationMonitorConfig | None = None  # DC only
    meter: MeterConfig | None = None  # None: no metering (no real meter driver yet)
    # The PLC modem the car talks ISO 15118 through (needs [iso15118]); None: no SLAC
    # (an EVCC reaches [iso15118].interface directly: lab, loopback)
    plc: PlcConfig | None = None
    # RFID/NFC card reader: a tap authorises (OCPP Authorize, local list, cache) and
    # a second tap of the same card (or its group) stops; None: no reader
    token_reader: TokenReaderConfig | None = None

    @model_validator(mode="after")
    def _kind_rules(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.kind == "ac":
            if self.phases is None:
                problems.append((("phases",), "required for kind = 'ac' (1 or 3)", None))
            if not AC_MIN_CURRENT_A <= self.max_current_a <= AC_MAX_CURRENT_A:
                problems.append(
                    (
                        ("max_current_a",),
                        f"must be {AC_MIN_CURRENT_A:g}..{AC_MAX_CURRENT_A:g} A for kind = 'ac' "
                        "(IEC 61851-1 PWM range)",
                        self.max_current_a,
                    )
                )
            for name in ("power_stage", "isolation_monitor"):
                if getattr(self, name) is not None:
                    problems.append(((name,), "only allowed for kind = 'dc'", None))
        else:
            if self.phases is not None:
                problems.append((("phases",), "only allowed for kind = 'ac'", self.phases))
            for name in ("power_stage", "isolation_monitor"):
                if getattr(self, name) is None:
                    problems.append(((name,), "required for kind = 'dc'", None))
            if isinstance(self.meter, SimMeterConfig) and self.meter.link == "modbus":
                problems.append(
                    (("meter", "link"), "'modbus' simulates an AC meter (SDM630)", "modbus")
                )
        seen: dict[int, int] = {}
        for index, connector in enumerate(self.connectors):
            if connector.id in seen:
                problems.append(
                    (
                        ("connector", index, "id"),
                        f"duplicate connector id {connector.id} "
                        f"(also connector[{seen[connector.id]}])",
                        connector.id,
                    )
                )
            else:
                seen[connector.id] = index
        _fail(problems, type(self).__name__)
        return self


# --------------------------------------------------------------------------- safety, runtime


_SAFETY = SafetyLimits()  # the defaults live there, once


class SafetyConfig(_Model):
    """Thresholds and timeouts of the safety supervisor (``[safety]``): the fields of
    :class:`chargepoint.safety.limits.SafetyLimits`, validated; each reaches it."""

    # IEC 61851-23: fault below 100 ohm/V, warning below 500 ohm/V (here for 1000 V).
    isolation_fault_ohm: Annotated[Float, Field(gt=0)] = _SAFETY.isolation_fault_ohm
    isolation_warning_ohm: Annotated[Float, Field(gt=0)] = _SAFETY.isolation_warning_ohm
    over_temperature_c: Annotated[Float, Field(gt=0, le=150)] = _SAFETY.over_temperature_c
    # DC output voltage that latches a fault; None: 5 % above the power stage's maximum.
    over_voltage_v: Annotated[Float, Field(gt=0, le=1500)] | None = _SAFETY.over_voltage_v
    # The board reports at least every 100 ms, so a shorter timeout trips spuriously.
    board_status_timeout_s: Annotated[Float, Field(gt=0.1, le=5)] = _SAFETY.board_status_timeout_s
    power_stage_status_timeout_s: Annotated[Float, Field(gt=0, le=5)] = (
        _SAFETY.power_stage_status_timeout_s
    )
    # IEC 61851-1 wants the contactors closed within 3 s of state C.
    contactor_close_timeout_s: Annotated[Float, Field(gt=0, le=3)] = (
        _SAFETY.contactor_close_timeout_s
    )
    contactor_open_timeout_s: Annotated[Float, Field(gt=0, le=3)] = _SAFETY.contactor_open_timeout_s
    # CP held at state F on a fault: at least 4 s (ISO 15118-3, IEC 61851-1)
    fault_pulse_f_s: Annotated[Float, Field(ge=MIN_FAULT_PULSE_F_S, le=60)] = (
        _SAFETY.fault_pulse_f_s
    )
    # A fault latched this often within the window needs a service reset.
    fault_repeat_limit: Annotated[Int, Field(ge=1, le=100)] = _SAFETY.fault_repeat_limit
    fault_repeat_window_s: Annotated[Float, Field(gt=0, le=86_400)] = _SAFETY.fault_repeat_window_s

    def limits(self) -> SafetyLimits:
        """The core's view of this section (every field, by name)."""
        return SafetyLimits(**self.model_dump())

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.isolation_warning_ohm <= self.isolation_fault_ohm:
            _fail(
                [
                    (
                        ("isolation_warning_ohm",),
                        f"must be above isolation_fault_ohm ({self.isolation_fault_ohm:g})",
                        self.isolation_warning_ohm,
                    )
                ],
                type(self).__name__,
            )
        return self


# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_UNIX_SOCKET_PATH = 107


def _check_socket_path(path: Path) -> Path:
    if len(os.fsencode(path)) > _MAX_UNIX_SOCKET_PATH:
        raise ValueError(f"longer than {_MAX_UNIX_SOCKET_PATH} bytes (AF_UNIX limit)")
    return path


class RuntimeConfig(_Model):
    """Process-level settings (the systemd unit owns these directories)."""

    control_socket: Annotated[AbsolutePath, AfterValidator(_check_socket_path)] = Path(
        "/run/chargepoint/control.sock"
    )
    state_dir: AbsolutePath = Path("/var/lib/chargepoint")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json for journald/log shippers
    # diagnostics.log and security.log in state_dir (OCPP GetLog): each at most this
    # size plus one rotated copy
    log_file_max_kb: Annotated[Int, Field(ge=16, le=1_048_576)] = 2048
    watchdog: Bool = True  # systemd WatchdogSec keep-alive (sd_notify)
    # A lab bench: real power hardware next to simulated safety sensors is allowed
    # (warned). Never on a charger a vehicle can be connected to.
    lab_bench: Bool = False


# --------------------------------------------------------------------------- simulation

Iso20Service = Literal["DC_BPT", "DC", "AC_BPT", "AC"]
ControlMode = Literal["scheduled", "dynamic"]


SlacFailure = Literal["never", "after_parm", "after_sounds", "after_atten_char", "after_match"]


class SimEvConfig(_Model):
    """The simulated vehicle plugged into every simulated EVSE (``[sim]``)."""

    battery_capacity_wh: Annotated[Float, Field(gt=0)] = 60_000.0
    initial_soc_pct: Annotated[Float, Field(ge=0, le=100)] = 40.0
    target_soc_pct: Annotated[Float, Field(ge=0, le=100)] = 80.0
    onboard_charger_max_current_a: Annotated[Float, Field(gt=0)] = 16.0  # per phase
    phases: Phases = 3
    max_discharge_power_w: Annotated[Float, Field(ge=0)] = 11_000.0  # 0: no V2G
    wants_ventilation: Bool = False  # signal state D instead of C
    # With a simulated PLC link (evse.plc backend "sim"): the car's SLAC stack
    slac_fail: SlacFailure = "never"  # where the car's SLAC gives up for good
    slac_delay_s: Annotated[Float, Field(ge=0, le=60)] = 0.0  # plug -> first CM_SLAC_PARM.REQ
    slac_loss: Annotated[Float, Field(ge=0, le=0.9)] = 0.0  # frames lost on the power line
    slac_attenuation_db: Annotated[Float, Field(ge=0, le=80)] = 22.0  # mean, car -> charger
    # With [iso15118]: the simulated car speaks ISO 15118-20 (our own EVCC).
    simulated_car: Bool = True  # False: an external EVCC drives the session (interop tests)
    hlc_service: Iso20Service = "DC_BPT"
    control_mode: ControlMode = "dynamic"
    loop_interval_s: Annotated[Float, Field(ge=0, le=10)] = 0.1


# --------------------------------------------------------------------------- ISO 15118-20


def _dynamic_port(port: int) -> int:
    if port != 0 and not DYNAMIC_PORTS[0] <= port <= DYNAMIC_PORTS[1]:
        raise ValueError(
            f"must be 0 or in the dynamic range {DYNAMIC_PORTS[0]}..{DYNAMIC_PORTS[1]}, got {port}"
        )
    return port


DYNAMIC_PORTS = (49152, 65535)


class Iso15118Config(_Model):
    """ISO 15118-20 SECC (``[iso15118]``): high-level communication with the car.

    One V2G server per EVSE: EVSE n listens on ``port + n - 1`` (``port = 0``:
    an ephemeral port each, for tests). ``interface = "lo"`` serves on ``::1``
    (simulation, tests); a PLC interface (e.g. ``eth1`` for a QCA7000 on
    ``qcaspi``) serves on its IPv6 link-local address.
    """

    interface: Annotated[str, Field(min_length=1, max_length=15)] = "lo"
    # SDP announces a port of the dynamic range 49152-65535 (EVCCs reject others);
    # 0: a free one from that range (tests).
    port: Annotated[Int, AfterValidator(_dynamic_port)] = 64_109
    sdp_port: Annotated[Int, Field(ge=0, le=65535)] = 15118
    # ISO 15118-20 runs over TLS 1.3 ([V2G20-2356]); "off" is for lab setups only.
    tls: Literal["on", "off"] = "on"
    cert_chain: AbsolutePath | None = None  # SECC leaf + sub-CAs (PEM)
    key: AbsolutePath | None = None  # SECC private key (PEM)
    client_ca: AbsolutePath | None = None  # OEM root for mutual TLS
    require_client_cert: Bool = False
    # Simulated installations: create (once) and use a test PKI in this directory.
    test_pki_dir: AbsolutePath | None = None
    # Offered services; None: what each EVSE's kind and hardware allow.
    services: tuple[Iso20Service, ...] | None = None
    control_modes: Annotated[tuple[ControlMode, ...], Field(min_length=1)] = (
        "scheduled",
        "dynamic",
    )
    evse_id_prefix: Annotated[str, Field(min_length=1, max_length=30)] = "DE*OPN*E"
    allow_discharge: Bool = True  # BPT services are offered only with a bidirectional stage
    # Timing ([V2G20-1500]/[V2G20-1502]); slower lab cars may need more.
    charge_loop_timeout_s: Annotated[Float, Field(gt=0, le=10)] = 0.5
    sequence_timeout_s: Annotated[Float, Field(gt=0, le=600)] = 60.0
    communication_setup_timeout_s: Annotated[Float, Field(gt=0, le=600)] = 20.0
    # With a CSMS: hold ScheduleExchange Ongoing this long for the TxProfile that
    # answers NotifyEVChargingNeeds (OCPP K15); 0: never wait. The EV gives up at 60 s.
    csms_schedule_wait_s: Annotated[Float, Field(ge=0, le=50)] = 20.0
    # ISO 15118-3 after a failed session: X1 pause, then 5 % again, this many times
    retries: Annotated[Int, Field(ge=0, le=10)] = 3
    # AC only: after the retries, offer IEC 61851-1 basic charging (PWM current)
    fallback_to_basic: Bool = False

    @model_validator(mode="after")
    def _tls_material(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.tls == "on" and self.test_pki_dir is None:
            for name in ("cert_chain", "key"):
                if getattr(self, name) is None:
                    problems.append(((name,), "required with tls = 'on' (or test_pki_dir)", None))
        if self.require_client_cert and self.client_ca is None and self.test_pki_dir is None:
            problems.append((("client_ca",), "required with require_client_cert", None))
        _fail(problems, type(self).__name__)
        return self


# --------------------------------------------------------------------------- CSMS


OcppSubprotocol = Literal["ocpp2.1", "ocpp2.0.1"]
DEFAULT_SUBPROTOCOLS: tuple[OcppSubprotocol, ...] = ("ocpp2.1", "ocpp2.0.1")


class CsmsConfig(_Model):
    """Connection to the charging station management system (OCPP)."""

    # Base endpoint; the OCPP client appends "/<station.id>".
    url: str
    # OCPP security profiles: 1 basic auth (ws), 2 TLS + basic auth, 3 TLS + client cert.
    security_profile: Annotated[Int, Field(ge=1, le=3)]
    # Offered in order of preference.
    subprotocols: Annotated[tuple[OcppSubprotocol, ...], Field(min_length=1)] = DEFAULT_SUBPROTOCOLS
    password: Secret | None = None  # basic-auth password (profiles 1 and 2)
    ca_file: AbsolutePath | None = None  # None: system trust store
    client_cert_file: AbsolutePath | None = None  # profile 3
    client_key: Secret | None = None  # profile 3; a plain string is a file path
    ping_interval_s: Annotated[Float, Field(ge=0)] = 30.0  # WebSocket ping; 0 disables
    # Manufacturer root (PEM) firmware signing certificates must chain to (OCPP L01);
    # None: UpdateFirmware is answered InvalidCertificate.
    firmware_signing_root: AbsolutePath | None = None
    # The manufacturer's CRL(s) (PEM, one or more, or one DER) for its signing
    # certificates: a listed one is answered RevokedCertificate (L01, TC_L_04).
    firmware_signing_crl: AbsolutePath | None = None

    @field_validator("client_key", mode="before")
    @classmethod
    def _key_path_shorthand(cls, data: Any) -> Any:
        return _path_as_secret_file(data)

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"must start with ws:// or wss://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"has no host name: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not contain credentials; use password instead")
        return url

    @field_validator("subprotocols")
    @classmethod
    def _distinct(cls, protocols: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(protocols)) != len(protocols):
            raise ValueError("lists a subprotocol twice")
        return protocols

    @model_validator(mode="after")
    def _profile_rules(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        scheme = urlsplit(self.url).scheme
        profile = self.security_profile
        if profile == 1 and scheme != "ws":
            problems.append(
                (
                    ("url",),
                    "security_profile 1 is unsecured transport: use ws:// or profile 2",
                    self.url,
                )
            )
        if profile >= 2 and scheme != "wss":
            problems.append(
                (("url",), f"security_profile {profile} needs TLS: use wss://", self.url)
            )
        if profile <= 2 and self.password is None:
            problems.append(
                (("password",), f"required for security_profile {profile} (basic auth)", None)
            )
        if profile == 3:
            if self.client_cert_file is None:
                problems.append((("client_cert_file",), "required for security_profile 3", None))
            if self.client_key is None:
                problems.append((("client_key",), "required for security_profile 3", None))
        elif (self.client_cert_file is None) != (self.client_key is None):
            missing = "client_key" if self.client_key is None else "client_cert_file"
            problems.append(((missing,), "client_cert_file and client_key go together", None))
        if self.firmware_signing_crl is not None and self.firmware_signing_root is None:
            problems.append(
                (("firmware_signing_crl",), "needs firmware_signing_root (the CRL's issuer)", None)
            )
        _fail(problems, type(self).__name__)
        return self


class FirmwareConfig(_Model):
    """Secure firmware update (OCPP L01): where releases are installed, how long a new
    one has to report READY before it is rolled back."""

    # Holds releases/<version>, the `current` link systemd starts, pending.json.
    releases_dir: AbsolutePath = Path("/opt/chargepoint")
    confirm_within_s: Annotated[Float, Field(ge=10, le=86_400)] = 300.0
    max_download_mb: Annotated[Float, Field(gt=0, le=4096)] = 200.0
    # CA (PEM) for the firmware server's certificate; None: system trust store.
    ca_file: AbsolutePath | None = None


# --------------------------------------------------------------------------- root


class Config(_Model):
    """A whole station configuration file."""

    station: StationConfig
    evse: Annotated[tuple[EvseConfig, ...], Field(min_length=1)]
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    sim: SimEvConfig | None = None
    csms: CsmsConfig | None = None
    iso15118: Iso15118Config | None = None
    firmware: FirmwareConfig | None = None

    _source: str = PrivateAttr(default="<config>")

    @model_validator(mode="after")
    def _station_rules(self, info: ValidationInfo) -> Self:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        seen: dict[int, int] = {}
        for index, evse in enumerate(self.evse):
            if evse.id in seen:
                problems.append(
                    (
                        ("evse", index, "id"),
                        f"duplicate EVSE id {evse.id} (also evse[{seen[evse.id]}])",
                        evse.id,
                    )
                )
            else:
                seen[evse.id] = index
            if evse.plc is not None and self.iso15118 is None:
                problems.append((("evse", index, "plc"), "needs an [iso15118] section", None))
            if not self.runtime.lab_bench:
                for name, message in _mixed_backends(evse):
                    problems.append(
                        (
                            ("evse", index, name),
                            f"{message}: refused (a real driver is needed, or "
                            "runtime.lab_bench = true on a lab bench)",
                            "sim",
                        )
                    )
        if self.firmware is not None and (
            self.csms is None or self.csms.firmware_signing_root is None
        ):
            problems.append(
                (("firmware",), "needs [csms] with firmware_signing_root (signed updates)", None)
            )
        interfaces = [e.plc.interface for e in self.evse if isinstance(e.plc, PacketPlcConfig)]
        for index, evse in enumerate(self.evse):
            if isinstance(evse.plc, PacketPlcConfig) and interfaces.count(evse.plc.interface) > 1:
                problems.append(
                    (
                        ("evse", index, "plc", "interface"),
                        "each EVSE needs its own PLC modem (one car per logical network)",
                        evse.plc.interface,
                    )
                )
        _fail(problems, type(self).__name__)
        context = info.context if isinstance(info.context, Mapping) else {}
        source = context.get("source")
        self._bind(source if isinstance(source, str) else "<config>")
        return self

    def _bind(self, source: str) -> None:
        """Tell each secret where it lives so resolve() errors point at the key."""
        self._source = source
        for key_path, secret in _secrets(self, ""):
            secret._key_path = key_path
            secret._source = source

    @property
    def source(self) -> str:
        """File name (or label) this configuration was parsed from."""
        return self._source

    def warnings(self) -> list[str]:
        """Legal but questionable settings, as ``"key.path: message"`` lines."""
        found: list[str] = []
        for key_path, secret in _secrets(self, ""):
            if secret.is_inline:
                found.append(
                    f"{key_path}: secret is inline in the config file; "
                    'prefer { file = "/path" } or { env = "NAME" }'
                )
        ids = sorted(evse.id for evse in self.evse)
        if ids != list(range(1, len(ids) + 1)):
            found.append("evse: OCPP expects EVSE ids numbered 1..N without gaps")
        for i, evse in enumerate(self.evse):
            for j, connector in enumerate(evse.connectors):
                if connector.type not in KNOWN_CONNECTOR_TYPES:
                    found.append(
                        f"evse[{i}].connector[{j}].type: {connector.type!r} is not a "
                        "known OCPP connector type"
                    )
            connector_ids = sorted(c.id for c in evse.connectors)
            if connector_ids != list(range(1, len(connector_ids) + 1)):
                found.append(f"evse[{i}].connector: OCPP expects connector ids 1..N without gaps")
            if self.runtime.lab_bench:  # otherwise refused by the validator
                found.extend(f"evse[{i}].{name}: {msg}" for name, msg in _mixed_backends(evse))
        simulated = any(evse.pilot_board.backend == "sim" for evse in self.evse)
        if self.sim is not None and not simulated:
            found.append("sim: ignored, no EVSE uses a simulated pilot board")
        return found


def _mixed_backends(evse: EvseConfig) -> list[tuple[str, str]]:
    """(setting, why) for each simulated device next to real power hardware: it
    watches nothing real."""
    real = [
        name
        for name, part in (("pilot_board", evse.pilot_board), ("power_stage", evse.power_stage))
        if part is not None and part.backend != "sim"
    ]
    if not real:
        return []
    simulated = [
        name
        for name, part in (
            ("pilot_board", evse.pilot_board),
            ("power_stage", evse.power_stage),
            ("isolation_monitor", evse.isolation_monitor),
            ("meter", evse.meter),
        )
        if part is not None and part.backend == "sim"
    ]
    return [
        (
            name,
            f"simulated, but {' and '.join(real)} {'is' if len(real) == 1 else 'are'} "
            "real hardware; it does not observe the real plant",
        )
        for name in simulated
    ]


def _secrets(node: BaseModel, prefix: str) -> Iterator[tuple[str, Secret]]:
    """Every Secret below ``node`` with its human key path."""
    for name, field in type(node).model_fields.items():
        key = field.alias or name
        value = getattr(node, name)
        children: list[tuple[str, object]]
        if isinstance(value, tuple):
            children = [(f"{prefix}{key}[{i}]", item) for i, item in enumerate(value)]
        else:
            children = [(f"{prefix}{key}", value)]
        for path, child in children:
            if isinstance(child, Secret):
                yield path, child
            elif isinstance(child, BaseModel):
                yield from _secrets(child, f"{path}.")


# --------------------------------------------------------------------------- loading


_TOML_POSITION = re.compile(r"^(?P<message>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at ``path``."""
    source = os.fspath(path)
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(source, [("<file>", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [("<file>", f"not UTF-8 text: {exc}")]) from exc
    return parse_config(text, source)


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate TOML ``text``; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except RecursionError:  # arrays or tables nested thousands deep: no config is like that
        raise ConfigError(source, [("<toml>", "nested too deeply")]) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.match(message)
        if match:
            where = f"line {match['line']}, column {match['column']}"
            message = f"TOML syntax error: {match['message']}"
        else:
            where = "<toml>"
            message = f"TOML syntax error: {message}"
        raise ConfigError(source, [(where, message)]) from exc
    try:
        return Config.model_validate(data, context={"source": source})
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from exc
    except RecursionError:
        raise ConfigError(source, [("<toml>", "nested too deeply")]) from None


def format_problems(err: ConfigError) -> str:
    """Multi-line text for the CLI: one problem per line, key path first."""
    count = len(err.problems)
    noun = "problem" if count == 1 else "problems"
    lines = [f"{err.source}: {count} {noun}"]
    width = max((len(path) for path, _ in err.problems), default=0)
    lines.extend(f"  {path.ljust(width)}  {message}" for path, message in err.problems)
    return "\n".join(lines)


# --------------------------------------------------------------------------- error translation


@dataclass(frozen=True, slots=True)
class _Where:
    path: str
    node: Any  # the type found at the end of the location, or None when lost
    parent: Any  # the model holding the last key, or None
    in_secret: bool


def _strip(tp: Any) -> Any:
    """Remove ``Annotated`` and ``None`` from a type so its shape shows."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(members) == 1:
                tp = members[0]
            else:
                return typing.Union[tuple(members)]  # noqa: UP007 - runtime construction
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_models(tp: Any) -> list[type[BaseModel]]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [arg for arg in typing.get_args(tp) if _is_model(arg)]
    return []


def _tags(model: type[BaseModel]) -> tuple[str, ...]:
    field = model.model_fields.get("backend")
    if field is None:
        return ()
    return tuple(str(arg) for arg in typing.get_args(field.annotation))


def _locate(loc: tuple[int | str, ...]) -> _Where:
    """Turn a pydantic location into a TOML-ish key path by walking the models.

    Walking the types (rather than guessing from the strings) is what lets us
    drop discriminator tags such as ``serial`` without ever dropping a real key
    that happens to share a tag's name, like ``[sim]``.
    """
    text = ""
    node: Any = Config
    parent: Any = None
    in_secret = False
    for part in loc:
        node = _strip(node)
        if _is_model(node) and issubclass(node, Secret):
            in_secret = True
        if isinstance(part, int):
            text += f"[{part}]"
            args = typing.get_args(node) if typing.get_origin(node) in (tuple, list) else ()
            node = args[0] if args else None
            continue
        members = _union_models(node)
        if members:
            node = next((m for m in members if part in _tags(m) or part == m.__name__), None)
            continue
        text += f".{part}" if text else part
        parent = node if _is_model(node) else None
        field = _field_for_key(parent, part) if parent is not None else None
        node = field.annotation if field is not None else None
    node = _strip(node)
    if _is_model(node) and issubclass(node, Secret):
        in_secret = True
    return _Where(text or "<top level>", node, parent, in_secret)


def _field_for_key(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field
    return None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _show(value: object) -> str | None:
    """A short rendering of an offending scalar; tables and arrays are not shown."""
    if isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    errors = exc.errors(include_url=False)
    # pydantic also reports "too short" for an array whose items all failed;
    # the item errors are the real news.
    item_parents = {
        tuple(e["loc"][:i])
        for e in errors
        for i, part in enumerate(e["loc"])
        if isinstance(part, int)
    }
    problems: list[tuple[str, str]] = []
    for error in errors:
        if error["type"] == "too_short" and tuple(error["loc"]) in item_parents:
            continue
        where = _locate(tuple(error["loc"]))
        kind = error["type"]
        message = error["msg"]
        path = where.path
        show_value = not where.in_secret
        if kind == "missing":
            message = "missing required key"
            show_value = False
        elif kind == "extra_forbidden":
            message = "unknown key"
            if where.parent is not None:
                message += f" (expected one of: {', '.join(_keys_of(where.parent))})"
            show_value = False
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            tags = [tag for model in _union_models(where.node) for tag in _tags(model)]
            expected = ", ".join(repr(tag) for tag in tags)
            path = f"{path}.backend"
            if kind == "union_tag_invalid":
                message = f"unknown backend; expected one of: {expected}"
                ctx = error.get("ctx") or {}
                tag = ctx.get("tag")
                message += f" (got {tag!r})" if isinstance(tag, str) else ""
            else:
                message = f"missing required key (one of: {expected})"
            show_value = False
        elif kind == _CONFIG_RULE:
            show_value = False  # our own messages already name the values
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
            show_value = False
        if show_value:
            shown = _show(error.get("input"))
            if shown is not None:
                message += f" (got {shown})"
        problems.append((path, message))
    return problems
