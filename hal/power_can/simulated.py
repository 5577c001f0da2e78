"""A simulated bidirectional DC power module on the far side of a CAN bus.

It speaks the protocol of ``docs/power-stage-can.md`` so that the real driver
(:class:`hal.power_can.driver.CanPowerStage`) can be exercised end to end, and
it drives the DC path of a :class:`hal.sim.plant.Plant`
(``dc_voltage_v`` / ``dc_current_a``).

Electrical model, deliberately small:

* Connected (``plant.contactor_closed`` and ``plant.ev_dc_contactor_closed``
  and a battery voltage present): the EV battery is the voltage source behind
  ``output_resistance_ohm`` (cable, filter), so the output voltage is
  ``battery_voltage_v + current * output_resistance_ohm``. The module is a
  current source regulated by an integrating voltage loop -- towards the target
  voltage in EXPORT (CV), towards the minimum voltage in IMPORT -- and clamped
  by the commanded and the capability current and power limits (CC / CP). The
  integrator keeps the loop stable whether or not the EV model adds its own
  internal resistance to ``battery_voltage_v``.
* Open circuit: in EXPORT the voltage slews towards the target (that is how a
  DC charger pre-charges the cable); otherwise it bleeds down.
* The current slews at ``current_slew_a_per_s``; OFF, faults and a lost host
  heartbeat ramp it to zero at the faster ``off_current_slew_a_per_s``.

Physics is the synchronous :meth:`SimulatedPowerModule.step`; :meth:`run`
calls it from the event loop clock, or leaves it to a
:class:`hal.sim.world.SimWorld` (``step_physics=False``).
"""

from __future__ import annotations

import asyncio
import logging
import math

import can

from hal.power_can.codec import (
    HOST_TO_MODULE,
    MODE_CODES,
    MODES_BY_CODE,
    PROTOCOL_VERSION,
    CodecError,
    Frame,
    Signal,
    check_node_id,
    faults_to_bits,
    power_module_frames,
    split_arbitration_id,
)
from hal.power_stage import PowerMode, PowerStageCapabilities, PowerStageFault, PowerStageStatus
from hal.sim.plant import Plant

_log = logging.getLogger(__name__)

_NOTIFIER_POLL_S = 0.05
# Voltage-loop gain of the regulator (A per V of error per second) and the
# longest time step it integrates at once: k * dt * R stays well below 1 for
# any sensible loop resistance, so a late wake-up cannot make it oscillate.
_VOLTAGE_LOOP_GAIN_A_PER_V_S = 200.0
_MAX_REGULATOR_STEP_S = 0.02


class SimulatedPowerModule:
    """The far end of :class:`hal.power_can.driver.CanPowerStage`.

    The module borrows ``bus``: it never shuts it down.
    """

    def __init__(
        self,
        bus: can.BusABC,
        node_id: int,
        plant: Plant,
        capabilities: PowerStageCapabilities,
        *,
        status_period_s: float = 0.03,
        step_period_s: float = 0.01,
        heartbeat_timeout_s: float = 0.5,
        voltage_slew_v_per_s: float = 500.0,
        current_slew_a_per_s: float = 200.0,
        off_current_slew_a_per_s: float = 2000.0,
        bleed_time_constant_s: float = 0.2,
        output_resistance_ohm: float = 0.05,
        temperature_rise_c_per_kw: float = 0.1,
    ) -> None:
        check_node_id(node_id)
        for name, value in (
            ("status_period_s", status_period_s),
            ("step_period_s", step_period_s),
            ("heartbeat_timeout_s", heartbeat_timeout_s),
            ("voltage_slew_v_per_s", voltage_slew_v_per_s),
            ("current_slew_a_per_s", current_slew_a_per_s),
            ("off_current_slew_a_per_s", off_current_slew_a_per_s),
            ("bleed_time_constant_s", bleed_time_constant_s),
        ):
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not math.isfinite(output_resistance_ohm) or output_resistance_ohm < 0.0:
            raise ValueError("output_resistance_ohm must be >= 0")
        self.bus = bus
        self.node_id = node_id
        self.plant = plant
        self.status_period_s = status_period_s
        self.step_period_s = step_period_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.voltage_slew_v_per_s = voltage_slew_v_per_s
        self.current_slew_a_per_s = current_slew_a_per_s
        self.off_current_slew_a_per_s = off_current_slew_a_per_s
        self.bleed_time_constant_s = bleed_time_constant_s
        self.output_resistance_ohm = output_resistance_ohm
        self.temperature_rise_c_per_kw = temperature_rise_c_per_kw
        self._frames = power_module_frames(node_id)
        self._capabilities = capabilities
        self._capability_messages = self._build_capability_messages(capabilities)
        # commanded state
        self._mode = PowerMode.OFF
        self._target_voltage_v = 0.0
        self._export_current_limit_a = 0.0
        self._export_power_limit_w = 0.0
        self._import_min_voltage_v = 0.0
        self._import_current_limit_a = 0.0
        self._import_power_limit_w = 0.0
        # physical state
        self._voltage_v = 0.0
        self._current_a = 0.0
        self._temperature_c = plant.temperature_c
        # faults and watchdog
        self._injected_faults = PowerStageFault.NONE
        self._communication_lost = False
        self._last_heartbeat_s: float | None = None
        # bookkeeping
        self._status_due = True
        self._reported: tuple[PowerMode, PowerStageFault] | None = None
        self.malformed_frame_count = 0
        self.heartbeat_count = 0
        self.sent_status_count = 0

    # -- inspection / fault injection ------------------------------------

    @property
    def capabilities(self) -> PowerStageCapabilities:
        return self._capabilities

    @property
    def mode(self) -> PowerMode:
        """Operating mode (OFF while any fault is active)."""
        return self._mode

    @property
    def faults(self) -> PowerStageFault:
        faults = self._injected_faults
        if self._communication_lost:
            faults |= PowerStageFault.COMMUNICATION
        return faults

    @property
    def voltage_v(self) -> float:
        return self._voltage_v

    @property
    def current_a(self) -> float:
        return self._current_a

    def status(self) -> PowerStageStatus:
        return PowerStageStatus(
            mode=self._mode,
            voltage_v=self._voltage_v,
            current_a=self._current_a,
            temperature_c=self._temperature_c,
            faults=self.faults,
        )

    def inject_fault(self, fault: PowerStageFault) -> None:
        """Raise ``fault`` (kept until :meth:`clear_faults`); the output goes off."""
        if fault == PowerStageFault.NONE:
            return
        self._injected_faults |= fault
        self._trip(f"injected fault {fault!r}")

    def clear_faults(self) -> None:
        """Remove injected faults; the module stays OFF until commanded again."""
        self._injected_faults = PowerStageFault.NONE
        self._status_due = True
        _log.info("power module %d: injected faults cleared", self.node_id)

    def _trip(self, reason: str) -> None:
        if self._mode is not PowerMode.OFF:
            _log.warning("power module %d: output off (%s)", self.node_id, reason)
        self._mode = PowerMode.OFF
        self._status_due = True

    # -- physics ----------------------------------------------------------

    def connected(self) -> bool:
        """True when the output is wired through to a battery."""
        plant = self.plant
        return (
            plant.contactor_closed and plant.ev_dc_contactor_closed and plant.battery_voltage_v > 0
        )

    def step(self, dt_s: float) -> None:
        """Advance the electrical model by ``dt_s`` and write it to the plant."""
        if dt_s < 0.0 or math.isnan(dt_s):
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        if dt_s == 0.0:
            return
        caps = self._capabilities
        plant = self.plant
        mode = self._mode
        if self.connected():
            battery_v = plant.battery_voltage_v
            dt_reg = min(dt_s, _MAX_REGULATOR_STEP_S)
            measured_v = battery_v + self._current_a * self.output_resistance_ohm
            if mode is PowerMode.EXPORT:
                target_v = _clamp(self._target_voltage_v, caps.min_voltage_v, caps.max_voltage_v)
                limit_a = min(
                    self._export_current_limit_a,
                    caps.max_export_current_a,
                    _current_for_power(
                        min(self._export_power_limit_w, caps.max_export_power_w), measured_v
                    ),
                )
                wanted = self._current_a + (
                    _VOLTAGE_LOOP_GAIN_A_PER_V_S * dt_reg * (target_v - measured_v)
                )
                target_a = _clamp(wanted, 0.0, limit_a)
                self._current_a = _slew(self._current_a, target_a, self.current_slew_a_per_s * dt_s)
            elif mode is PowerMode.IMPORT:
                min_v = max(self._import_min_voltage_v, caps.min_voltage_v)
                limit_a = min(
                    self._import_current_limit_a,
                    caps.max_import_current_a,
                    _current_for_power(
                        min(self._import_power_limit_w, caps.max_import_power_w), measured_v
                    ),
                )
                wanted = self._current_a + (
                    _VOLTAGE_LOOP_GAIN_A_PER_V_S * dt_reg * (min_v - measured_v)
                )
                target_a = _clamp(wanted, -limit_a, 0.0)
                self._current_a = _slew(self._current_a, target_a, self.current_slew_a_per_s * dt_s)
            else:
                self._current_a = _slew(self._current_a, 0.0, self.off_current_slew_a_per_s * dt_s)
            self._voltage_v = max(0.0, battery_v + self._current_a * self.output_resistance_ohm)
        else:
            # Nothing to push current into (or draw it from).
            self._current_a = 0.0
            if mode is PowerMode.EXPORT:
                target_v = _clamp(self._target_voltage_v, caps.min_voltage_v, caps.max_voltage_v)
                self._voltage_v = _slew(self._voltage_v, target_v, self.voltage_slew_v_per_s * dt_s)
            else:
                self._voltage_v *= math.exp(-dt_s / self.bleed_time_constant_s)
                if self._voltage_v < 0.1:
                    self._voltage_v = 0.0
        power_kw = abs(self._voltage_v * self._current_a) / 1000.0
        steady_c = plant.temperature_c + power_kw * self.temperature_rise_c_per_kw
        self._temperature_c += (steady_c - self._temperature_c) * min(1.0, dt_s / 5.0)
        plant.dc_voltage_v = self._voltage_v
        plant.dc_current_a = self._current_a

    # -- communication ----------------------------------------------------

    async def run(self, *, step_physics: bool = True) -> None:
        """Serve the bus until cancelled; step the physics unless a world does."""
        loop = asyncio.get_running_loop()
        notifier = can.Notifier(
            self.bus, [self.handle_message], timeout=_NOTIFIER_POLL_S, loop=loop
        )
        _log.info("power module %d: running", self.node_id)
        try:
            last_s = loop.time()
            next_status_s = last_s
            while True:
                await asyncio.sleep(self.step_period_s)
                now_s = loop.time()
                self.check_watchdog(now_s)
                if step_physics:
                    self.step(now_s - last_s)
                last_s = now_s
                state = (self._mode, self.faults)
                if self._status_due or state != self._reported or now_s >= next_status_s:
                    self.send_status()
                    next_status_s = now_s + self.status_period_s
        finally:
            notifier.stop(timeout=2 * _NOTIFIER_POLL_S + 0.5)
            _log.info("power module %d: stopped", self.node_id)

    def check_watchdog(self, now_s: float) -> None:
        """Switch off and flag COMMUNICATION once the host heartbeat is stale."""
        if self._last_heartbeat_s is None or self._communication_lost:
            return
        if now_s - self._last_heartbeat_s > self.heartbeat_timeout_s:
            self._communication_lost = True
            self._trip("host heartbeat lost")

    def _heartbeat_fresh(self) -> bool:
        if self._last_heartbeat_s is None or self._communication_lost:
            return False
        now_s = asyncio.get_running_loop().time()
        return now_s - self._last_heartbeat_s <= self.heartbeat_timeout_s

    def send_status(self) -> None:
        status = self.status()
        frame = self._frames.by_name("STATUS")
        values = {
            "mode": float(MODE_CODES[status.mode]),
            "voltage_v": _fit(frame.signal("voltage_v"), status.voltage_v),
            "current_a": _fit(frame.signal("current_a"), status.current_a),
            "temperature_c": _fit(frame.signal("temperature_c"), status.temperature_c),
            "faults": float(faults_to_bits(status.faults)),
        }
        self._send(_message(frame, values))
        self._status_due = False
        self._reported = (status.mode, status.faults)
        self.sent_status_count += 1

    def handle_message(self, msg: can.Message) -> None:
        """Apply one received frame (called by python-can on the loop thread)."""
        if msg.is_error_frame or msg.is_extended_id:
            return
        function, node = split_arbitration_id(msg.arbitration_id)
        if node != self.node_id or function not in HOST_TO_MODULE:
            return
        try:
            if msg.is_remote_frame or msg.is_fd:
                raise CodecError("remote or CAN FD frame where a classic data frame is expected")
            decoded = self._frames.decode(msg.arbitration_id, msg.data)
        except CodecError as exc:
            self.malformed_frame_count += 1
            _log.warning(
                "power module %d: ignoring malformed frame id=0x%03X data=%s: %s",
                self.node_id,
                msg.arbitration_id,
                bytes(msg.data).hex(" ") or "-",
                exc,
            )
            return
        values = decoded.values
        name = decoded.frame.name
        if name == "HOST_HEARTBEAT":
            self._on_heartbeat()
        elif name == "CAPABILITIES_REQUEST":
            for reply in self._capability_messages:
                self._send(reply)
        elif name == "CONTROL":
            self._on_control(MODES_BY_CODE[int(values["mode"])])
        elif name == "EXPORT_LIMITS":
            self._target_voltage_v = values["target_voltage_v"]
            self._export_current_limit_a = values["current_limit_a"]
            self._export_power_limit_w = values["power_limit_w"]
            self._status_due = True
        elif name == "IMPORT_LIMITS":
            self._import_min_voltage_v = values["min_voltage_v"]
            self._import_current_limit_a = values["current_limit_a"]
            self._import_power_limit_w = values["power_limit_w"]
            self._status_due = True

    def _on_heartbeat(self) -> None:
        self.heartbeat_count += 1
        self._last_heartbeat_s = asyncio.get_running_loop().time()
        if self._communication_lost:
            # Recovered, but the output stays OFF until the host commands again.
            self._communication_lost = False
            self._status_due = True
            _log.info("power module %d: host heartbeat back", self.node_id)

    def _on_control(self, mode: PowerMode) -> None:
        self._status_due = True  # every command is acknowledged by a STATUS
        if mode is PowerMode.OFF:
            self._mode = PowerMode.OFF
            return
        refusal = None
        if self.faults:
            refusal = f"faults {self.faults!r}"
        elif not self._heartbeat_fresh():
            refusal = "no host heartbeat"
        elif mode is PowerMode.IMPORT and not self._capabilities.bidirectional:
            refusal = "not bidirectional"
        if refusal is not None:
            _log.warning("power module %d: refusing %s: %s", self.node_id, mode.name, refusal)
            self._mode = PowerMode.OFF
            return
        self._mode = mode

    def _send(self, msg: can.Message) -> None:
        try:
            self.bus.send(msg)
        except can.CanError as exc:
            _log.warning("power module %d: send failed: %s", self.node_id, exc)

    def _build_capability_messages(self, caps: PowerStageCapabilities) -> list[can.Message]:
        """Encode the replies once, so bad capabilities fail at construction."""
        return [
            _message(
                self._frames.by_name("CAPABILITIES_EXPORT"),
                {
                    "min_voltage_v": caps.min_voltage_v,
                    "max_voltage_v": caps.max_voltage_v,
                    "max_current_a": caps.max_export_current_a,
                    "max_power_w": caps.max_export_power_w,
                },
            ),
            _message(
                self._frames.by_name("CAPABILITIES_IMPORT"),
                {
                    "max_current_a": caps.max_import_current_a,
                    "max_power_w": caps.max_import_power_w,
                    "bidirectional": 1.0 if caps.bidirectional else 0.0,
                    "protocol_version": float(PROTOCOL_VERSION),
                },
            ),
        ]


def _message(frame: Frame, values: dict[str, float]) -> can.Message:
    return can.Message(
        arbitration_id=frame.frame_id, is_extended_id=False, data=frame.encode(values)
    )


def _fit(signal: Signal, value: float) -> float:
    """Saturate a measurement to what the signal can carry, as an ADC would."""
    return _clamp(value, signal.physical_min, signal.physical_max)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _slew(value: float, target: float, max_step: float) -> float:
    return value + _clamp(target - value, -max_step, max_step)


def _current_for_power(power_w: float, voltage_v: float) -> float:
    """Current magnitude that gives ``power_w`` at ``voltage_v`` (no limit near 0 V)."""
    return power_w / voltage_v if voltage_v > 1.0 else math.inf


__all__ = ["SimulatedPowerModule"]
