"""Session bookkeeping: from plug-in to unplug, with meter registers.

A session starts when an EV is seen (IDLE -> CONNECTED) and ends when it is
gone (-> IDLE). Energy is the difference of the meter's registers, so the
summary always agrees with the meter (what a CSMS and a calibration-law audit
compare against).
"""

from __future__ import annotations

from dataclasses import dataclass

from chargepoint.iec61851.evse_state import EvseState


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    import_energy_wh: float
    export_energy_wh: float


@dataclass(frozen=True, slots=True)
class SessionSummary:
    evse_id: int
    number: int  # 1, 2, ... since the service started
    started_at: float  # monotonic seconds
    ended_at: float
    charging_s: float  # time spent with contactor permission (state CHARGING)
    meter_start: MeterSnapshot
    meter_end: MeterSnapshot
    end_reason: str

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def energy_imported_wh(self) -> float:
        """Energy delivered to the EV (import register difference)."""
        return self.meter_end.import_energy_wh - self.meter_start.import_energy_wh

    @property
    def energy_exported_wh(self) -> float:
        """Energy taken from the EV (export register difference)."""
        return self.meter_end.export_energy_wh - self.meter_start.export_energy_wh


@dataclass
class _Open:
    number: int
    started_at: float
    meter_start: MeterSnapshot
    charging_since: float | None = None
    charging_s: float = 0.0


class SessionTracker:
    """Turns EVSE state changes plus meter snapshots into session summaries."""

    def __init__(self, evse_id: int) -> None:
        self.evse_id = evse_id
        self._open: _Open | None = None
        self._count = 0

    @property
    def active(self) -> bool:
        return self._open is not None

    def on_state(
        self, old: EvseState, new: EvseState, meter: MeterSnapshot, now: float
    ) -> SessionSummary | None:
        """Feed a state change; returns a summary when a session has just ended."""
        if self._open is None and old is EvseState.IDLE and new is not EvseState.IDLE:
            self._count += 1
            self._open = _Open(self._count, now, meter)
        session = self._open
        if session is None:
            return None
        if new is EvseState.CHARGING and session.charging_since is None:
            session.charging_since = now
        elif new is not EvseState.CHARGING and session.charging_since is not None:
            session.charging_s += now - session.charging_since
            session.charging_since = None
        if new is EvseState.IDLE:
            self._open = None
            reason = "fault" if old is EvseState.FAULT else "ev_disconnected"
            return SessionSummary(
                self.evse_id,
                session.number,
                session.started_at,
                now,
                session.charging_s,
                session.meter_start,
                meter,
                reason,
            )
        return None
