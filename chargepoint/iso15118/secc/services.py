"""Energy transfer services and their parameter sets (ISO 15118-20 8.4.3.2, FACTS.md).

What the SECC offers depends on the configuration and on the power stage: a
BPT service is offered only when the hardware is bidirectional and discharge
is allowed by the configuration. Each service gets one parameter set per
configured control mode: ID 1 = Scheduled, ID 2 = Dynamic. Every set carries
ControlMode, MobilityNeedsMode, Pricing and Connector (several EVCCs stop when
ControlMode is missing, FACTS.md); BPT adds BPTChannel and GeneratorMode, AC
adds EVSENominalVoltage, AC_BPT adds GridCodeIslandingDetectionMethod.
"""

from __future__ import annotations

from dataclasses import dataclass

from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.settings import (
    AC_SERVICES,
    BPT_SERVICES,
    DC_SERVICES,
    SeccSettings,
    ServiceId,
)

CONTROL_MODE_CODE = {"scheduled": 1, "dynamic": 2}  # 8.4.3.2: ControlMode 1 Scheduled, 2 Dynamic
PARAMETER_SET_ID = {"scheduled": 1, "dynamic": 2}
MOBILITY_NEEDS_BY_EVCC = 1  # MobilityNeedsMode 1: the EVCC provides departure/targets
PRICING_ABSOLUTE = 1  # Pricing 1: absolute price schedule
DC_CONNECTOR_EXTENDED = 2  # DC Connector: 1 Core, 2 Extended, 3 Dual2, 4 Dual4
AC_CONNECTOR = {1: 1, 3: 3}  # AC Connector: 1 single-phase, 3 three-phase (FACTS.md)
BPT_CHANNEL_UNIFIED = 1
GENERATOR_MODE_GRID_FOLLOWING = 1
ISLANDING_DETECTION_PASSIVE = 2


@dataclass(frozen=True, slots=True)
class Selection:
    """What the EV selected in ServiceSelection."""

    service: ServiceId
    control_mode: str  # "scheduled" | "dynamic"

    @property
    def dc(self) -> bool:
        return self.service in DC_SERVICES

    @property
    def bpt(self) -> bool:
        return self.service in BPT_SERVICES


def offered_services(settings: SeccSettings, namespace_dc: bool) -> list[ServiceId]:
    """Services for the protocol the EV agreed to (-20 DC or -20 AC), in offer order."""
    family = DC_SERVICES if namespace_dc else AC_SERVICES
    return [s for s in settings.services if s in family]


def discovery_list(settings: SeccSettings, services: list[ServiceId]) -> m.ServiceList:
    return m.ServiceList(
        service=[m.Service(service_id=int(s), free_service=settings.free_service) for s in services]
    )


def _int(name: str, value: int) -> m.Parameter:
    return m.Parameter(name=name, int_value=value)


def parameter_sets(settings: SeccSettings, service: ServiceId) -> list[m.ParameterSet]:
    sets: list[m.ParameterSet] = []
    for mode in settings.control_modes:
        params = [
            _int("ControlMode", CONTROL_MODE_CODE[mode]),
            _int("MobilityNeedsMode", MOBILITY_NEEDS_BY_EVCC),
            _int("Pricing", PRICING_ABSOLUTE),
        ]
        if service in DC_SERVICES:
            params.insert(0, _int("Connector", DC_CONNECTOR_EXTENDED))
        else:
            params.insert(0, _int("Connector", AC_CONNECTOR.get(settings.ac_phases, 3)))
            params.append(_int("EVSENominalVoltage", round(settings.nominal_voltage_v)))
        if service in BPT_SERVICES:
            params.append(_int("BPTChannel", BPT_CHANNEL_UNIFIED))
            params.append(_int("GeneratorMode", GENERATOR_MODE_GRID_FOLLOWING))
        if service is ServiceId.AC_BPT:
            params.append(_int("GridCodeIslandingDetectionMethod", ISLANDING_DETECTION_PASSIVE))
        sets.append(m.ParameterSet(parameter_set_id=PARAMETER_SET_ID[mode], parameter=params))
    return sets


def select(settings: SeccSettings, offered: list[ServiceId], service_id: int,
           parameter_set_id: int) -> Selection | None:  # fmt: skip
    """The selection if it names an offered service and one of its parameter sets."""
    if service_id not in [int(s) for s in offered]:
        return None
    for mode in settings.control_modes:
        if PARAMETER_SET_ID[mode] == parameter_set_id:
            return Selection(ServiceId(service_id), mode)
    return None
