"""When a transaction starts and ends (TxCtrlr.TxStartPoint / TxStopPoint), sans-I/O.

Theory of operation (OCPP 2.0.1 E01 start options, E06 stop options): the runtime
sends :class:`~chargepoint.ocpp.station_io.EvseActivity`, a full snapshot of the
EVSE's flags, on every change.  Each TxStartPoint/TxStopPoint value is a condition
on that snapshot (:func:`conditions`).

* **Start.** With no transaction on the EVSE, a transaction starts when a listed
  start point *occurs*, i.e. its condition becomes true (the first snapshot of an
  EVSE counts every true condition as new).  A condition that merely still holds
  after a transaction ended does not start another one.
* **Stop.** A transaction ends when a listed stop point that was met during the
  transaction is no longer met (E06: "when any event in the list is no longer
  valid").  A stop point never met does not end it: with the default
  ``EVConnected,Authorized`` a transaction started at plug-in keeps running until
  the EV is unplugged or an authorization given in it is withdrawn.  As a safety
  net the transaction also ends when no condition holds at all.
* The end is named (triggerReason, default stoppedReason) after the most
  upstream condition lost with the snapshot (:data:`TX_POINTS` order), listed or
  not: losing the cable explains losing the power path.

The charging state (E02, transactionInfo.chargingState) is derived from the flags
unless the runtime states it (:func:`charging_state`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chargepoint.ocpp.device_model import TX_POINTS
from chargepoint.ocpp.station_io import ChargingState, EvseActivity, StoppedReason
from chargepoint.ocpp.transactions import STOP_TRIGGER

Conditions = Mapping[str, bool]

#: TriggerReasonEnumType of a Started event, per start point.
_START_TRIGGER = {
    "ParkingBayOccupancy": "EVDetected",
    "EVConnected": "CablePluggedIn",
    "Authorized": "Authorized",
    "DataSigned": "SignedDataReceived",
    "PowerPathClosed": "ChargingStateChanged",
    "EnergyTransfer": "ChargingStateChanged",
}

#: Stop reasons that name their own trigger even when a charging point is lost.
_SPECIFIC = frozenset(
    {
        StoppedReason.REMOTE,
        StoppedReason.DE_AUTHORIZED,
        StoppedReason.EMERGENCY_STOP,
        StoppedReason.ENERGY_LIMIT_REACHED,
        StoppedReason.GROUND_FAULT,
        StoppedReason.IMMEDIATE_RESET,
        StoppedReason.POWER_LOSS,
        StoppedReason.TIME_LIMIT_REACHED,
        StoppedReason.TIMEOUT,
    }
)


def conditions(activity: EvseActivity) -> dict[str, bool]:
    """Whether each TxStartPoint/TxStopPoint value holds in ``activity``."""
    return {
        "ParkingBayOccupancy": activity.parking_bay_occupied,
        "EVConnected": activity.ev_connected,
        "Authorized": activity.authorized,
        "DataSigned": activity.data_signed,
        "PowerPathClosed": activity.power_path_closed,
        "EnergyTransfer": activity.energy_transfer,
    }


def charging_state(activity: EvseActivity) -> ChargingState:
    """ChargingStateEnumType: the runtime's if given, else from the flags."""
    if activity.charging_state is not None:
        return activity.charging_state
    if not activity.ev_connected:
        return ChargingState.IDLE
    if activity.energy_transfer:
        return ChargingState.CHARGING
    if activity.power_path_closed:
        return ChargingState.SUSPENDED_EV  # the EVSE offers energy, the EV takes none
    return ChargingState.EV_CONNECTED


def _ordered(points: Iterable[str]) -> list[str]:
    wanted = set(points)
    return [p for p in TX_POINTS if p in wanted]


def start_point(
    points: Iterable[str], previous: Conditions | None, current: Conditions
) -> str | None:
    """The start point that occurred with ``current``, or ``None`` (E01)."""
    for point in _ordered(points):
        if current[point] and (previous is None or not previous[point]):
            return point
    return None


def start_trigger(point: str, activity: EvseActivity) -> str:
    if point == "Authorized" and activity.remote_start_id is not None:
        return "RemoteStart"  # F01/F02
    return _START_TRIGGER[point]


@dataclass(frozen=True)
class StopDecision:
    point: str
    trigger: str
    reason: StoppedReason


def _stop_for(point: str, activity: EvseActivity) -> StopDecision:
    given = activity.stopped_reason
    if point == "EVConnected":
        # E06/E09: the cable was unplugged.
        return StopDecision(point, "EVCommunicationLost", given or StoppedReason.EV_DISCONNECTED)
    if point == "ParkingBayOccupancy":
        return StopDecision(point, "EVDeparted", given or StoppedReason.EV_DISCONNECTED)
    if point == "Authorized":
        # E07: stopped by presenting the token again (Local); RemoteStop (F03);
        # Deauthorized by the CSMS.
        reason = given or StoppedReason.LOCAL
        if reason is StoppedReason.LOCAL:
            return StopDecision(point, "StopAuthorized", reason)
        return StopDecision(point, STOP_TRIGGER[reason], reason)
    # DataSigned / PowerPathClosed / EnergyTransfer: the charging itself stopped.
    reason = given or (StoppedReason.STOPPED_BY_EV if activity.authorized else StoppedReason.LOCAL)
    if reason in _SPECIFIC:
        return StopDecision(point, STOP_TRIGGER[reason], reason)
    if reason is StoppedReason.LOCAL and not activity.authorized:
        return StopDecision(point, "StopAuthorized", reason)
    return StopDecision(point, "ChargingStateChanged", reason)


def stop_decision(
    points: Iterable[str],
    met: Iterable[str],
    previous: Conditions | None,
    current: Conditions,
    activity: EvseActivity,
) -> StopDecision | None:
    """Why the transaction ends with ``current``, or ``None`` if it goes on (E06).

    ``met``: the points met at some time during the transaction."""
    already = set(met)
    for point in _ordered(points):
        if point in already and not current[point]:
            # Named after the most upstream condition lost just now, listed or not:
            # an unplugged cable is EVCommunicationLost even if only EnergyTransfer
            # is a stop point.
            cause = next(
                (p for p in TX_POINTS if previous is not None and previous[p] and not current[p]),
                point,
            )
            return _stop_for(cause, activity)
    if not any(current.values()):
        # Nothing is left of the session: end it, named after what was lost.
        for point in TX_POINTS:
            if point in already or (previous is not None and previous[point]):
                return _stop_for(point, activity)
        reason = activity.stopped_reason or StoppedReason.OTHER
        return StopDecision("", STOP_TRIGGER[reason], reason)
    return None
