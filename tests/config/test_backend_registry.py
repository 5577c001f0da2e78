"""Every ``backend = "..."`` the configuration admits has a factory in the registry,
and nothing else does: a new driver is one module and one entry."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from chargepoint import backends
from chargepoint.config import (
    IsolationMonitorConfig,
    MeterConfig,
    PilotBoardConfig,
    PlcConfig,
    PowerStageConfig,
)


def backend_names(union: Any) -> set[str]:
    """The ``backend`` literals of a (possibly Annotated) union of config models."""
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    models = typing.get_args(union) or (union,)
    names: set[str] = set()
    for model in models:
        literal = model.model_fields["backend"].annotation
        names.update(typing.get_args(literal))
    return names


@pytest.mark.parametrize(
    ("union", "registry"),
    [
        (PilotBoardConfig, backends.PILOT_BOARDS),
        (PowerStageConfig, backends.POWER_STAGES),
        (MeterConfig, backends.METERS),
        (IsolationMonitorConfig, backends.ISOLATION_MONITORS),
        (PlcConfig, backends.PLC_LINKS),
    ],
)
def test_config_backends_and_the_registry_agree(union: Any, registry: dict[str, Any]) -> None:
    assert backend_names(union) == set(registry)


def test_real_drivers_are_registered() -> None:
    assert {"serial"} <= set(backends.PILOT_BOARDS)
    assert {"can"} <= set(backends.POWER_STAGES)
    assert {"modbus"} <= set(backends.METERS) & set(backends.ISOLATION_MONITORS)
    assert {"packet"} <= set(backends.PLC_LINKS)
