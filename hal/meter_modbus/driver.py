"""Real :class:`hal.meter.Meter` driver for Modbus RTU energy meters.

What the registers mean is the :class:`~hal.meter_modbus.registers.MeterMap`'s
business; this module turns one read of every block into a
:class:`hal.meter.MeterReading`:

===================  ================================  ==============================
MeterReading         from (SDM630 registers)           sign
===================  ================================  ==============================
import_energy_wh     total import kWh (30073) x 1000   energy into the EV
export_energy_wh     total export kWh (30075) x 1000   energy out of the EV
power_w              total system power (30053)        + to the EV
voltage_v            phase 1 line-neutral volts        unsigned
current_a            phase 1 current (30007)           sign of phase 1 power (30013)
===================  ================================  ==============================

The meter's "import" is energy from its supply terminals to its load terminals.
Wired as usual (grid on the supply side, EV on the load side) that is energy to
the EV, the direction our convention counts as +, so energies and powers pass
through unchanged; the RMS current, which such meters report without a sign,
gets the sign of its phase's active power. ``reverse_direction=True`` is for a
meter wired the other way round: it swaps the registers and negates the signs.

Every read counts towards :attr:`ModbusMeter.consecutive_failures` (reset by a
good read), so the service can latch a fault when the meter stays unreadable.
"""

from __future__ import annotations

import logging
import math

from hal.errors import HalError, HalInitError, HalOperationError
from hal.meter import MeterReading
from hal.meter_modbus.registers import SDM630, MeterMap, Quantity
from hal.meter_modbus.rtu import LinkStats, ModbusRtuLink, Parity, RtuSettings, StopBits

_log = logging.getLogger(__name__)


class ModbusMeter:
    """Implements :class:`hal.meter.Meter` for a Modbus RTU meter described by a map."""

    def __init__(
        self,
        port: str,
        *,
        meter_map: MeterMap = SDM630,
        unit_id: int = 1,
        baudrate: int = 9600,
        parity: Parity = "N",
        stopbits: StopBits = 1,
        timeout_s: float = 0.5,
        retries: int = 1,
        reverse_direction: bool = False,
    ) -> None:
        settings = RtuSettings(
            port=port,
            unit_id=unit_id,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            timeout_s=timeout_s,
            retries=retries,
        )
        self.meter_map = meter_map
        self.reverse_direction = reverse_direction
        self._link = ModbusRtuLink(settings, device=f"{meter_map.model} meter (unit {unit_id})")
        self._consecutive_failures = 0
        self.last_values: dict[Quantity, float] = {}  # every mapped quantity of the last good read

    @property
    def consecutive_failures(self) -> int:
        """Failed reads since the last good one (0 after a good read)."""
        return self._consecutive_failures

    @property
    def stats(self) -> LinkStats:
        return self._link.stats

    # -- hal.meter.Meter --------------------------------------------------

    async def open(self) -> None:
        """Open the port and read every block once: a meter that does not answer fails here."""
        await self._link.open()
        try:
            await self.read()
        except HalError as exc:
            await self._link.close()
            raise HalInitError(f"meter did not answer its first read: {exc}") from exc
        _log.info("%s: first reading %s", self._link.device, self.last_values)

    async def close(self) -> None:
        """Idempotent."""
        await self._link.close()

    async def read(self) -> MeterReading:
        """Read the registers now."""
        try:
            values = await self._read_blocks()
            reading = self._to_reading(values)
        except HalError:
            self._consecutive_failures += 1
            raise
        self._consecutive_failures = 0
        self.last_values = values
        return reading

    # -- internals --------------------------------------------------------

    async def _read_blocks(self) -> dict[Quantity, float]:
        m = self.meter_map
        values: dict[Quantity, float] = {}
        for block in m.blocks:
            what = block.describe(m.table)
            registers = await self._link.read_registers(
                m.table, block.address, block.count, what=what
            )
            block_values = m.decode_block(block, registers)
            for quantity, value in block_values.items():
                if not math.isfinite(value):
                    raise HalOperationError(
                        f"{self._link.device}: {what}: {quantity.value} reads {value}"
                    )
            values.update(block_values)
        return values

    def _to_reading(self, values: dict[Quantity, float]) -> MeterReading:
        import_wh = values[Quantity.IMPORT_ENERGY_WH]
        export_wh = values[Quantity.EXPORT_ENERGY_WH]
        power_w = values[Quantity.POWER_TOTAL_W]
        phase_power_w = values.get(Quantity.POWER_L1_W, power_w)
        current_a = abs(values[Quantity.CURRENT_L1_A])
        if phase_power_w < 0.0:
            current_a = -current_a
        if self.reverse_direction:
            import_wh, export_wh = export_wh, import_wh
            power_w, current_a = -power_w, -current_a
        return MeterReading(
            import_energy_wh=import_wh,
            export_energy_wh=export_wh,
            power_w=power_w,
            voltage_v=values[Quantity.VOLTAGE_L1_V],
            current_a=current_a,
        )
