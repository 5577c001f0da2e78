"""The payloads of NotifyEVChargingNeeds and NotifyEVChargingSchedule (sans-I/O).

Why a module of its own: every number here comes from a car over ISO 15118-20
and reaches the CSMS, so each one is checked on the way.  A value that is not
finite, lies outside its range or cannot be written in the field's JSON type is
dropped (with one log line naming the fields); a schema-required field then
gets a documented derivation instead.  OCPP 2.0.1 wants integers for every
charging-needs magnitude, 2.1 decimals: integers are rounded *inwards* (maxima
down, minima up), decimals to 0.1 the same way, so the CSMS never sees a range
wider than the car's.

Field mapping (OCPP 2.0.1/2.1 ChargingNeedsType):

* ``requestedEnergyTransfer``: DC, or AC_single/two/three_phase by the phases in
  use (the EVSE's if the car did not say); 2.1 with a bidirectional service
  DC_BPT / AC_BPT.
* ``dcChargingParameters``: evMaxCurrent (derived as evMaxPower / evMaxVoltage
  when the car gave no current), evMaxVoltage, evMaxPower, energyAmount (the
  target energy), stateOfCharge, fullSoC (the -20 target SoC); left out when
  evMaxCurrent or evMaxVoltage cannot be had (both are required).
* ``acChargingParameters`` (all four fields required): energyAmount = target
  energy, else maximum energy, else 0 (a negative request counts as 0, here and
  in the DC energyAmount); evMinCurrent = minimum current, else
  minimum power / (nominal V x phases), else 0 (no minimum); evMaxCurrent =
  maximum current, else maximum power / (nominal V x phases), else the whole
  object is left out; evMaxVoltage = the car's, else the EVSE's nominal voltage.
* 2.1 ``v2xChargingParameters`` (the schema's parameter set for ISO 15118-20,
  so sent for every session, BPT or not): charge power/current/voltage bounds,
  the energy requests (which alone may be negative) and targetSoC; with a
  bidirectional service also the discharge bounds.  ``controlMode`` 2.1 only.
"""

from __future__ import annotations

import logging
import math
from enum import Enum

from chargepoint.ocpp.outbox import format_timestamp
from chargepoint.ocpp.rpc import JsonObject, ProtocolVersion
from chargepoint.ocpp.station_io import EvChargingNeeds, EvChargingSchedule, EvseRating

logger = logging.getLogger(__name__)

#: OCPP integers are 32-bit signed (OCPP 2.0.1 Part 2, primitive datatypes); the
#: same bound keeps 2.1 decimals sane (no 1e300 W reaches a CSMS).
MAX_INT = 2**31 - 1
#: ChargingScheduleType.chargingSchedulePeriod: maxItems 1024 (both versions)
MAX_PERIODS = 1024
#: 9999-12-31T23:59:59Z, the last instant an RFC 3339 timestamp can hold
MAX_EPOCH_S = 253_402_300_799.0

_AC_MODES = {1: "AC_single_phase", 2: "AC_two_phase", 3: "AC_three_phase"}
_CONTROL_MODES = {"scheduled": "ScheduledControl", "dynamic": "DynamicControl"}


class Toward(Enum):
    """Which way a value is rounded to the field's resolution."""

    DOWN = "down"  # maxima: never looser than the car said
    UP = "up"  # minima
    NEAREST = "nearest"


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` (also for 10**400 or a non-number)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _step(value: float, step: float, toward: Toward) -> float:
    scaled = value / step
    if toward is Toward.DOWN:
        return math.floor(scaled + 1e-6) * step
    if toward is Toward.UP:
        return math.ceil(scaled - 1e-6) * step
    return round(scaled) * step


def floor_tenth(value: float) -> float:
    """Down to one decimal (OCPP 2.0.1 ChargingSchedulePeriodType.limit allows one
    fractional digit); ``+ 0.0`` turns -0.0 into 0.0."""
    return round(_step(value, 0.1, Toward.DOWN), 1) + 0.0


class _Fields:
    """Checks the car's numbers for one message; remembers what it dropped."""

    def __init__(self, version: ProtocolVersion) -> None:
        self.decimals = version is ProtocolVersion.V21
        self.dropped: list[str] = []

    def value(
        self,
        name: str,
        raw: object,
        *,
        toward: Toward = Toward.NEAREST,
        signed: bool = False,
        at_least_zero: bool = False,
        integer: bool = False,
        hi: float = MAX_INT,
    ) -> int | float | None:
        """``raw`` in the field's type and range; ``None`` if absent or unusable.
        ``at_least_zero``: a negative value means "nothing" and becomes 0."""
        if raw is None:
            return None
        number = _finite(raw)
        if at_least_zero and number is not None and number < 0.0:
            number = 0.0
        lo = -hi if signed else 0.0
        if number is None or not lo <= number <= hi:
            self.dropped.append(f"{name}={raw!r:.40}")
            return None
        if integer or not self.decimals:
            whole = int(_step(number, 1.0, toward))
            return min(max(whole, int(lo)), int(hi))
        return round(_step(number, 0.1, toward), 1) + 0.0

    def report(self, what: str) -> None:
        if self.dropped:
            logger.warning("%s: ignoring unusable values %s", what, ", ".join(self.dropped))


def timestamp(epoch_s: object) -> str | None:
    """An OCPP timestamp, or ``None`` for an instant no timestamp can hold."""
    number = _finite(epoch_s)
    if number is None or not 0.0 <= number <= MAX_EPOCH_S:
        return None
    return format_timestamp(number)


def _phases(needs: EvChargingNeeds, rating: EvseRating) -> int:
    for phases in (needs.phases, rating.phases):
        if phases in (1, 2, 3):
            return int(phases)
    return 3


def _ratio(numerator: int | float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _dc_parameters(needs: EvChargingNeeds, f: _Fields) -> JsonObject | None:
    voltage = f.value("evMaxVoltage", needs.max_voltage_v, toward=Toward.DOWN)
    power = f.value("evMaxPower", needs.max_charge_power_w, toward=Toward.DOWN)
    current = f.value("evMaxCurrent", needs.max_charge_current_a, toward=Toward.DOWN)
    if current is None and voltage:
        derived = _ratio(power, voltage)
        current = f.value("evMaxCurrent (evMaxPower / evMaxVoltage)", derived, toward=Toward.DOWN)
    if current is None or voltage is None:
        logger.info(
            "EVSE %d: no EV maximum current and voltage: dcChargingParameters left out",
            needs.evse_id,
        )
        return None
    params: JsonObject = {"evMaxCurrent": current, "evMaxVoltage": voltage}
    optional = {
        "evMaxPower": power,
        "energyAmount": f.value("energyAmount", needs.target_energy_wh, at_least_zero=True),
        "stateOfCharge": f.value("stateOfCharge", needs.present_soc_pct, integer=True, hi=100),
        "fullSoC": f.value("fullSoC", needs.target_soc_pct, integer=True, hi=100),
    }
    params.update({name: v for name, v in optional.items() if v is not None})
    return params


def _ac_parameters(needs: EvChargingNeeds, rating: EvseRating, f: _Fields) -> JsonObject | None:
    watts_per_amp = rating.voltage_v * _phases(needs, rating)

    def current(name: str, amps: float | None, watts: float | None, toward: Toward) -> float | None:
        found = f.value(name, amps, toward=toward)
        if found is None:
            power = f.value(f"{name} (as power)", watts, toward=toward)
            found = f.value(f"{name} (power / V)", _ratio(power, watts_per_amp), toward=toward)
        return found

    max_current = current(
        "evMaxCurrent", needs.max_charge_current_a, needs.max_charge_power_w, Toward.DOWN
    )
    if max_current is None:
        logger.info(
            "EVSE %d: no EV maximum current or power: acChargingParameters left out",
            needs.evse_id,
        )
        return None
    min_current = current(
        "evMinCurrent", needs.min_charge_current_a, needs.min_charge_power_w, Toward.UP
    )
    energy = f.value("energyAmount", needs.target_energy_wh, at_least_zero=True)
    if energy is None:
        energy = f.value("energyAmount (maximum)", needs.max_energy_wh, at_least_zero=True)
    voltage = f.value("evMaxVoltage", needs.max_voltage_v, toward=Toward.DOWN)
    if voltage is None:
        voltage = f.value("evMaxVoltage (nominal)", rating.voltage_v, toward=Toward.DOWN)
    return {
        "energyAmount": 0 if energy is None else energy,
        "evMinCurrent": 0 if min_current is None else min_current,
        "evMaxCurrent": max_current,
        "evMaxVoltage": 0 if voltage is None else voltage,
    }


def _v2x_parameters(needs: EvChargingNeeds, f: _Fields) -> JsonObject:
    down, up = Toward.DOWN, Toward.UP
    fields: dict[str, int | float | None] = {
        "minChargePower": f.value("minChargePower", needs.min_charge_power_w, toward=up),
        "maxChargePower": f.value("maxChargePower", needs.max_charge_power_w, toward=down),
        "minChargeCurrent": f.value("minChargeCurrent", needs.min_charge_current_a, toward=up),
        "maxChargeCurrent": f.value("maxChargeCurrent", needs.max_charge_current_a, toward=down),
        "minVoltage": f.value("minVoltage", needs.min_voltage_v, toward=up),
        "maxVoltage": f.value("maxVoltage", needs.max_voltage_v, toward=down),
        "evTargetEnergyRequest": f.value(
            "evTargetEnergyRequest", needs.target_energy_wh, signed=True
        ),
        "evMinEnergyRequest": f.value("evMinEnergyRequest", needs.min_energy_wh, signed=True),
        "evMaxEnergyRequest": f.value("evMaxEnergyRequest", needs.max_energy_wh, signed=True),
        "targetSoC": f.value("targetSoC", needs.target_soc_pct, integer=True, hi=100),
    }
    if needs.bpt:
        # OCPP 2.1 V2XChargingParametersType: discharge values are magnitudes (>= 0)
        fields |= {
            "minDischargePower": f.value(
                "minDischargePower", needs.min_discharge_power_w, toward=up
            ),
            "maxDischargePower": f.value(
                "maxDischargePower", needs.max_discharge_power_w, toward=down
            ),
            "minDischargeCurrent": f.value(
                "minDischargeCurrent", needs.min_discharge_current_a, toward=up
            ),
            "maxDischargeCurrent": f.value(
                "maxDischargeCurrent", needs.max_discharge_current_a, toward=down
            ),
        }
    return {name: v for name, v in fields.items() if v is not None}


def charging_needs_request(
    needs: EvChargingNeeds, version: ProtocolVersion, rating: EvseRating
) -> JsonObject:
    """NotifyEVChargingNeedsRequest (K15.FR.01, K17) for ``version``, schema-valid
    whatever numbers the car sent."""
    v21 = version is ProtocolVersion.V21
    f = _Fields(version)
    if needs.dc:
        mode = "DC_BPT" if v21 and needs.bpt else "DC"
    else:
        mode = "AC_BPT" if v21 and needs.bpt else _AC_MODES[_phases(needs, rating)]
    charging: JsonObject = {"requestedEnergyTransfer": mode}
    departure = timestamp(needs.departure_time_utc_s)
    if departure is not None:
        charging["departureTime"] = departure
    elif needs.departure_time_utc_s is not None:
        f.dropped.append(f"departureTime={needs.departure_time_utc_s!r:.40}")
    if needs.dc:
        params = _dc_parameters(needs, f)
        if params is not None:
            charging["dcChargingParameters"] = params
    else:
        params = _ac_parameters(needs, rating, f)
        if params is not None:
            charging["acChargingParameters"] = params
    if v21:
        control = _CONTROL_MODES.get(needs.control_mode)
        if control is not None:
            charging["controlMode"] = control
        v2x = _v2x_parameters(needs, f)
        if v2x:
            charging["v2xChargingParameters"] = v2x
    payload: JsonObject = {"evseId": needs.evse_id, "chargingNeeds": charging}
    tuples = f.value("maxScheduleTuples", needs.max_schedule_tuples, integer=True)
    if tuples is not None:
        payload["maxScheduleTuples"] = tuples
    f.report(f"EV charging needs on EVSE {needs.evse_id}")
    return payload


def _periods(schedule: EvChargingSchedule, v21: bool, f: _Fields) -> list[JsonObject]:
    """The EV's periods in order; one that is unusable (or out of order) is left out."""
    out: list[JsonObject] = []
    previous = -1
    for index, period in enumerate(schedule.periods):
        start = f.value(f"period {index} start", period.start_s, integer=True)
        limit = _finite(period.limit_w)
        if start is None or start <= previous or limit is None or not 0 <= limit <= MAX_INT:
            f.dropped.append(f"period {index} ({period.start_s!r:.20} s, {period.limit_w!r:.20} W)")
            continue
        entry: JsonObject = {"startPeriod": int(start), "limit": floor_tenth(limit)}
        if v21 and period.discharge_limit_w is not None:
            name = f"period {index} dischargeLimit"
            discharge = f.value(name, period.discharge_limit_w, toward=Toward.DOWN)
            if discharge is not None:
                # OCPP 2.1 ChargingSchedulePeriodType.dischargeLimit: "maximum": 0
                entry["dischargeLimit"] = -float(discharge) + 0.0
        out.append(entry)
        previous = int(start)
        if len(out) == MAX_PERIODS:
            break
    return out


def charging_schedule_request(
    schedule: EvChargingSchedule, version: ProtocolVersion
) -> JsonObject | None:
    """NotifyEVChargingScheduleRequest (K15.FR.10, K17) for ``version``, or ``None``
    when nothing usable is left (no time base, no id, no period)."""
    v21 = version is ProtocolVersion.V21
    f = _Fields(version)
    time_base = timestamp(schedule.time_base_utc_s)
    tuple_id = f.value("id", schedule.tuple_id, integer=True)
    periods = _periods(schedule, v21, f)
    what = f"EV charging schedule on EVSE {schedule.evse_id}"
    f.report(what)
    if time_base is None or tuple_id is None or not periods:
        logger.warning(
            "%s: not sent (time base %r, tuple %r, %d usable periods)",
            what,
            schedule.time_base_utc_s,
            schedule.tuple_id,
            len(periods),
        )
        return None
    payload: JsonObject = {
        "timeBase": time_base,
        "evseId": schedule.evse_id,
        "chargingSchedule": {
            "id": tuple_id,
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": periods,
        },
    }
    if v21:
        # the ScheduleTuple the EV picked is the chargingSchedule of that id (2.1 K18)
        payload["selectedChargingScheduleId"] = tuple_id
    return payload
