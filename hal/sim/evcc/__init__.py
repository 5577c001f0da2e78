"""A simulated ISO 15118-20 EV (EVCC) for tests and ``chargepoint demo``.

* :mod:`hal.sim.evcc.session`: the sans-I/O EVCC protocol logic
  (:class:`Evcc20Session`), a peer that follows ISO 15118-20 on its own and
  checks everything the charger sends.
* :mod:`hal.sim.evcc.car`: the asyncio runner (:class:`SimulatedCar`): SDP,
  TCP/TLS, the car's CP and DC contactor via :class:`hal.sim.ev.SimulatedEv`,
  and its battery.
"""

from hal.sim.evcc.car import CarReport, SimulatedCar, TimelinePoint
from hal.sim.evcc.errors import CarError, CarTimeoutError
from hal.sim.evcc.outcome import EndReason, ResumeInfo, SessionResult
from hal.sim.evcc.profile import CarControls, CarFault, CarProfile, EvMeasurements
from hal.sim.evcc.session import Evcc20Session, Phase

__all__ = [
    "CarControls",
    "CarError",
    "CarFault",
    "CarProfile",
    "CarReport",
    "CarTimeoutError",
    "EndReason",
    "EvMeasurements",
    "Evcc20Session",
    "Phase",
    "ResumeInfo",
    "SessionResult",
    "SimulatedCar",
    "TimelinePoint",
]
