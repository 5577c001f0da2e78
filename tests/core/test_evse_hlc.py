"""The EVSE controller under ISO 15118: 5 % PWM, gated power requests, stop and retry rules."""

from __future__ import annotations

import pytest

from chargepoint.evse.actions import (
    Action,
    HlcPowerRefused,
    PowerDirection,
    SetContactorPermission,
    SetPowerStage,
    SwitchPowerStageOff,
)
from chargepoint.evse.events import (
    HlcContactors,
    HlcLinkFailed,
    HlcPower,
    HlcSessionEnded,
    HlcWakeUp,
    PowerStageObserved,
    SetCurrentLimit,
    StopCharging,
)
from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.iso15118.secc.actions import PowerPhase
from tests.core.test_evse_controller import Rig as BoardRig


class Rig(BoardRig):
    """The board rig plus a power stage that keeps reporting (its keep-alive)."""

    def report(self, cp: CpState | None = None, **kw: object) -> list[Action]:
        self.apply(self.ctl.handle(PowerStageObserved(0.0, 0.0, on=False), self.now))
        return super().report(cp, **kw)


DC = {
    "hlc_only": True,
    "has_power_stage": True,
    "max_voltage_v": 920.0,
    "max_export_current_a": 100.0,
    "max_import_current_a": 80.0,
    "max_export_power_w": 30_000.0,
    "max_import_power_w": 20_000.0,
}


def test_five_percent_without_authorisation_and_contactors_only_after_power_delivery() -> None:
    rig = Rig.make(autostart=False, **DC)
    rig.report(CpState.B)
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(5.0)  # talk first
    rig.report(CpState.C)
    assert not rig.permission and rig.ctl.state is EvseState.READY  # no basic charging
    rig.send(HlcContactors(True))
    assert rig.permission and rig.ctl.state is EvseState.CHARGING


def test_power_requests_are_gated() -> None:
    rig = Rig.make(**DC)
    rig.report(CpState.B)
    out = rig.send(HlcPower(PowerPhase.CABLE_CHECK, 500.0, 2.0, 1000.0))
    assert any(isinstance(a, HlcPowerRefused) for a in out)  # CP still B
    rig.report(CpState.C)
    out = rig.send(HlcPower(PowerPhase.CABLE_CHECK, 500.0, 50.0, 25_000.0))
    assert SetPowerStage(PowerDirection.EXPORT, 500.0, 2.0, 1000.0) in out  # <= 2 A
    out = rig.send(HlcPower(PowerPhase.ENERGY, 400.0, 60.0, 24_000.0))
    assert any(isinstance(a, HlcPowerRefused) for a in out)  # before PowerDelivery(Start)
    rig.send(HlcContactors(True))
    out = rig.send(HlcPower(PowerPhase.ENERGY, 400.0, -200.0, 90_000.0))
    assert SetPowerStage(PowerDirection.IMPORT, 400.0, 80.0, 20_000.0) in out  # clamped
    out = rig.send(HlcContactors(False))
    off = out.index(SwitchPowerStageOff())
    assert out.index(SetContactorPermission(False)) > off  # power stage Off first


def test_evse_stop_keeps_talking_then_forces_the_power_path_open() -> None:
    rig = Rig.make(**DC)
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.send(HlcContactors(True))
    rig.send(StopCharging("operator"))
    assert rig.permission and rig.duty == pytest.approx(5.0)  # the session tells the EV
    assert not rig.ctl.authorized
    rig.advance(5.9)
    assert rig.permission
    rig.advance(0.2)
    assert not rig.permission and rig.ctl.state is EvseState.READY  # it did not stop: forced


def test_failed_sessions_retry_after_x1_then_give_up() -> None:
    rig = Rig.make(hlc_retries=1, **DC)
    rig.report(CpState.B)
    rig.send(HlcSessionEnded(failed=True))
    assert rig.output is PilotOutput.X1  # ISO 15118-3: X1 before the next attempt
    rig.advance(2.9)
    assert rig.output is PilotOutput.X1
    rig.advance(0.2)
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(5.0)
    rig.send(HlcSessionEnded(failed=True))
    rig.advance(10.0)
    assert rig.output is PilotOutput.X1  # retries used up: no more attempts
    rig.report(CpState.A)
    rig.report(CpState.B)
    assert rig.output is PilotOutput.PWM  # a new plug-in starts afresh


def test_ac_falls_back_to_basic_charging() -> None:
    rig = Rig.make(hlc_only=True, hlc_retries=0, basic_fallback=True)
    rig.report(CpState.B)
    assert rig.duty == pytest.approx(5.0)
    rig.send(HlcSessionEnded(failed=True))
    rig.advance(6.0)
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(53.33)
    rig.report(CpState.C)
    assert rig.permission  # basic charging: C closes the contactors


AC_HLC = {"hlc_only": True}


def test_slac_wake_up_drives_f_for_the_step_then_five_percent_again() -> None:
    rig = Rig.make(**AC_HLC)
    rig.report(CpState.B)
    assert rig.duty == pytest.approx(5.0)
    rig.send(HlcWakeUp(4.0))  # ISO 15118-3 E/F step [V2G3-M06-07]
    assert rig.output is PilotOutput.F
    rig.advance(3.9)
    assert rig.output is PilotOutput.F
    assert rig.ctl.latched_faults == ()  # our own F is no EV error
    rig.send(SetCurrentLimit(10.0))  # a new limit does not cut the step short
    assert rig.output is PilotOutput.F
    rig.advance(0.2)
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(5.0)
    assert rig.ctl.state is EvseState.READY


def test_slac_wake_up_only_while_five_percent_invites_a_silent_car() -> None:
    rig = Rig.make(**DC)
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.send(HlcContactors(True))  # a session is running: no wake-up
    rig.send(HlcWakeUp(4.0))
    assert rig.output is PilotOutput.PWM and rig.permission
    basic = Rig.make()  # basic charging: no 5 %, no SLAC
    basic.report(CpState.B)
    basic.send(HlcWakeUp(4.0))
    assert basic.output is PilotOutput.PWM and basic.duty != pytest.approx(5.0)


def test_unplug_during_the_wake_up_step_ends_it() -> None:
    rig = Rig.make(**AC_HLC)
    rig.report(CpState.B)
    rig.send(HlcWakeUp(4.0))
    rig.send(HlcLinkFailed("no car"))  # gave up during the step: X1 pause
    assert rig.output is PilotOutput.X1
    rig.advance(5.0)
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(5.0)  # retry
    rig.send(HlcWakeUp(4.0))
    rig.report(CpState.A)
    rig.advance(5.0)
    assert rig.ctl.state is EvseState.IDLE and rig.output is not PilotOutput.F


def test_slac_giving_up_counts_as_a_failed_attempt() -> None:
    rig = Rig.make(hlc_retries=1, **AC_HLC)
    rig.report(CpState.B)
    rig.send(HlcLinkFailed("TT_EVSE_SLAC_init expired"))
    assert rig.output is PilotOutput.X1  # X1 pause, then 5 % again
    rig.advance(3.1)
    assert rig.duty == pytest.approx(5.0)
    rig.send(HlcLinkFailed("TT_EVSE_SLAC_init expired"))
    rig.advance(10.0)
    assert rig.output is PilotOutput.X1  # retries used up
