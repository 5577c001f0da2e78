"""Simulated insulation monitoring device (IMD) for the DC output.

A real IMD injects a measuring signal and needs time to settle after it is
started before its first value is trustworthy; during that time, and while
stopped, it reports no resistance. This model publishes one reading per
measurement period (driven by :meth:`SimulatedIsolationMonitor.step`) and
:meth:`SimulatedIsolationMonitor.read` waits for the next one, like the device.
"""

from __future__ import annotations

import asyncio
import logging

from hal.errors import HalOperationError
from hal.isolation import IsolationReading
from hal.sim.plant import Plant

_log = logging.getLogger(__name__)


class SimulatedIsolationMonitor:
    """Implements :class:`hal.isolation.IsolationMonitor` against a :class:`Plant`."""

    def __init__(
        self,
        plant: Plant,
        *,
        settling_time_s: float = 1.0,
        measurement_period_s: float = 0.1,
    ) -> None:
        if settling_time_s < 0.0:
            raise ValueError("settling_time_s must be >= 0")
        if measurement_period_s <= 0.0:
            raise ValueError("measurement_period_s must be > 0")
        self.plant = plant
        self.settling_time_s = settling_time_s
        self.measurement_period_s = measurement_period_s
        self._open = False
        self._measuring = False
        self._device_fault = False
        self._since_start_s = 0.0
        self._period_timer_s = 0.0
        self._latest = IsolationReading(resistance_ohm=None, voltage_v=0.0, device_fault=False)
        self._sequence = 0
        # Futures rather than an asyncio.Event: created on the reader's running
        # loop, so the monitor can be built before (or outlive) an event loop.
        self._waiters: list[asyncio.Future[IsolationReading]] = []

    # -- fault injection --------------------------------------------------

    def inject_device_fault(self, faulty: bool) -> None:
        """Make the device itself fail (self-test fails, no resistance reported)."""
        self._device_fault = faulty

    @property
    def device_fault(self) -> bool:
        return self._device_fault

    # -- physics ----------------------------------------------------------

    @property
    def measuring(self) -> bool:
        return self._measuring

    @property
    def settled(self) -> bool:
        return self._measuring and self._since_start_s >= self.settling_time_s

    @property
    def latest(self) -> IsolationReading:
        """The most recently published reading."""
        return self._latest

    @property
    def sequence(self) -> int:
        """Number of readings published so far."""
        return self._sequence

    def begin_measuring(self) -> None:
        """Synchronous core of :meth:`start`; restarts settling if stopped."""
        if not self._measuring:
            _log.debug("IMD measuring, settling for %.2f s", self.settling_time_s)
            self._measuring = True
            self._since_start_s = 0.0

    def end_measuring(self) -> None:
        """Synchronous core of :meth:`stop`."""
        self._measuring = False
        self._since_start_s = 0.0

    def measure_now(self) -> IsolationReading:
        """What the device would report at this instant."""
        resistance_ohm: float | None = None
        if self.settled and not self._device_fault:
            resistance_ohm = self.plant.isolation_resistance_ohm
        return IsolationReading(
            resistance_ohm=resistance_ohm,
            voltage_v=self.plant.dc_voltage_v,
            device_fault=self._device_fault,
        )

    def step(self, dt_s: float) -> None:
        """Advance by ``dt_s``; publish one reading per elapsed period."""
        if dt_s < 0.0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        if self._measuring:
            self._since_start_s += dt_s
        self._period_timer_s += dt_s
        if self._period_timer_s >= self.measurement_period_s:
            # Several periods in one long step still give just one fresh value.
            self._period_timer_s %= self.measurement_period_s
            self._publish(self.measure_now())

    def _publish(self, reading: IsolationReading) -> None:
        self._latest = reading
        self._sequence += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # a cancelled read leaves a done future
                waiter.set_result(reading)

    # -- hal.isolation.IsolationMonitor -----------------------------------

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        """Idempotent."""
        self._open = False
        self.end_measuring()

    async def start(self) -> None:
        """Start measuring (cable check)."""
        self._require_open()
        self.begin_measuring()

    async def stop(self) -> None:
        self._require_open()
        self.end_measuring()

    async def self_test(self) -> bool:
        """Run the device self-test; True when it passed."""
        self._require_open()
        await asyncio.sleep(0)
        passed = not self._device_fault
        if not passed:
            _log.warning("IMD self-test failed")
        return passed

    async def read(self) -> IsolationReading:
        """Wait for the next measurement."""
        self._require_open()
        waiter: asyncio.Future[IsolationReading] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def _require_open(self) -> None:
        if not self._open:
            raise HalOperationError("simulated isolation monitor is not open")
