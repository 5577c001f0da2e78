"""One source of truth: every ``[safety]`` field reaches the controller (and the SECC).

The defaults live once, in :class:`chargepoint.safety.limits.SafetyLimits`; the
configuration validates them and the composition root hands them over whole.
A field added to one side and not the other, or dropped on the way (as
``over_voltage_v`` once was), fails here.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from chargepoint.adapters.iso15118_setup import secc_settings
from chargepoint.app import evse_settings
from chargepoint.config import SafetyConfig, load_config, parse_config
from chargepoint.evse.controller import EvseController
from chargepoint.evse.events import PowerStageObserved
from chargepoint.safety.faults import FaultKind
from chargepoint.safety.limits import SafetyLimits
from hal.power_stage import PowerStageCapabilities
from tests.config.test_config import MINIMAL, problems_of

V2G_TOML = Path(__file__).resolve().parents[2] / "config" / "sim-v2g.toml"
CAPS = PowerStageCapabilities(
    min_voltage_v=150.0,
    max_voltage_v=920.0,
    max_export_current_a=100.0,
    max_export_power_w=30_000.0,
    max_import_current_a=100.0,
    max_import_power_w=30_000.0,
    bidirectional=True,
)
# a valid value other than the default, for every field
DISTINCT: dict[str, float | int] = {
    "isolation_fault_ohm": 150_000.0,
    "isolation_warning_ohm": 600_000.0,
    "over_temperature_c": 70.0,
    "over_voltage_v": 900.0,
    "board_status_timeout_s": 0.4,
    "power_stage_status_timeout_s": 0.6,
    "contactor_close_timeout_s": 1.5,
    "contactor_open_timeout_s": 0.2,
    "fault_pulse_f_s": 5.0,
    "fault_repeat_limit": 5,
    "fault_repeat_window_s": 60.0,
}


def test_the_config_section_and_the_core_have_the_same_fields_and_defaults() -> None:
    names = {f.name for f in fields(SafetyLimits)}
    assert set(SafetyConfig.model_fields) == names
    assert set(DISTINCT) == names
    assert SafetyConfig().limits() == SafetyLimits()


@pytest.mark.parametrize("name", sorted(DISTINCT))
def test_every_safety_field_reaches_the_controller(name: str) -> None:
    value = DISTINCT[name]
    assert value != getattr(SafetyLimits(), name)
    config = parse_config(MINIMAL + f"\n[safety]\n{name} = {value}\n", "test.toml")
    settings = evse_settings(config, config.evse[0], CAPS)
    assert getattr(settings.safety, name) == value
    controller = EvseController(settings)
    assert controller.settings.safety == settings.safety


def test_the_secc_gets_the_isolation_thresholds() -> None:
    text = V2G_TOML.read_text() + "\n[safety]\nisolation_warning_ohm = 700000.0\n"
    config = parse_config(text, str(V2G_TOML))
    settings = secc_settings(config, config.evse[0], CAPS)
    assert settings.isolation_warning_ohm == 700_000.0
    assert settings.isolation_fault_ohm == config.safety.isolation_fault_ohm


def test_over_voltage_defaults_to_the_stage_maximum_and_latches() -> None:
    config = load_config(V2G_TOML)
    settings = evse_settings(config, config.evse[0], CAPS)
    assert settings.safety.over_voltage_v == pytest.approx(920.0 * 1.05)
    ctl = EvseController(settings)
    ctl.start(0.0)
    ctl.handle(PowerStageObserved(900.0, 10.0, on=True), 0.1)
    assert not ctl.latched_faults
    ctl.handle(PowerStageObserved(970.0, 10.0, on=True), 0.2)
    assert [f.kind for f in ctl.latched_faults] == [FaultKind.OVER_VOLTAGE]


def test_fault_pulse_shorter_than_four_seconds_is_refused() -> None:
    assert list(problems_of(MINIMAL + "\n[safety]\nfault_pulse_f_s = 1.0\n")) == [
        "safety.fault_pulse_f_s"
    ]
    with pytest.raises(ValueError, match="fault_pulse_f_s"):
        SafetyLimits(fault_pulse_f_s=0.5)
