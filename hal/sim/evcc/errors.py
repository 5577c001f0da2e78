"""Errors of the simulated EVCC.

::

    RemoteProtocolError                (chargepoint.errors)
    └── CarError                       the charger broke the protocol or sent implausible values
        └── CarTimeoutError            no (complete) response, or an Ongoing loop, in time

``LocalProtocolError`` (chargepoint.errors) is raised when the car itself is
misused (e.g. data fed after the session ended).
"""

from __future__ import annotations

from typing import Any

from chargepoint.errors import RemoteProtocolError


class CarError(RemoteProtocolError):
    """The SECC misbehaved; the session is over (CP B, EV contactor open).

    ``message`` names the V2G message (e.g. ``DC_ChargeLoopRes``), ``field``
    the offending field path (``EVSEPresentVoltage``) or ``""``; ``report``
    is attached by :class:`~hal.sim.evcc.car.SimulatedCar` when it gives up.
    """

    def __init__(self, message: str, field: str, reason: str) -> None:
        self.message = message
        self.field = field
        self.reason = reason
        self.report: Any = None
        where = f"{message}.{field}" if field else message
        super().__init__(f"{where}: {reason}")


class CarTimeoutError(CarError):
    """A response or an Ongoing phase took longer than the EVCC may wait."""
