"""Traction battery of a simulated EV.

A deliberately small equivalent-circuit model: an open-circuit voltage that
depends on state of charge, one series resistance, and BMS power limits. It is
enough to make charging curves, DC voltages and V2G limits look believable to
the controller without pretending to be an electrochemical model.

Sign convention: positive current charges the battery (flows to the EV).
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right

_log = logging.getLogger(__name__)

# Open-circuit voltage of one NMC-like cell versus SoC: steep below ~10 %, a
# flat middle plateau, rising again towards full. Strictly increasing so that
# the pack voltage is a monotonic function of SoC.
_CELL_OCV_TABLE: tuple[tuple[float, float], ...] = (
    (0.0, 3.00),
    (2.0, 3.25),
    (5.0, 3.40),
    (10.0, 3.50),
    (20.0, 3.58),
    (30.0, 3.63),
    (40.0, 3.67),
    (50.0, 3.72),
    (60.0, 3.79),
    (70.0, 3.87),
    (80.0, 3.95),
    (90.0, 4.05),
    (95.0, 4.11),
    (100.0, 4.20),
)
_TABLE_SOC = tuple(soc for soc, _ in _CELL_OCV_TABLE)

CELL_MIN_OCV_V = _CELL_OCV_TABLE[0][1]
CELL_MAX_OCV_V = _CELL_OCV_TABLE[-1][1]


def cell_ocv_v(soc_pct: float) -> float:
    """Open-circuit voltage of one cell, linearly interpolated in the table."""
    soc = min(100.0, max(0.0, soc_pct))
    i = bisect_right(_TABLE_SOC, soc)
    if i >= len(_CELL_OCV_TABLE):
        return CELL_MAX_OCV_V
    soc_lo, v_lo = _CELL_OCV_TABLE[i - 1]
    soc_hi, v_hi = _CELL_OCV_TABLE[i]
    return v_lo + (v_hi - v_lo) * (soc - soc_lo) / (soc_hi - soc_lo)


class Battery:
    """Equivalent-circuit battery pack with BMS power limits.

    Defaults describe a 60 kWh pack of 108 cells in series (about 400 V
    nominal, 324 V empty to 454 V full).
    """

    def __init__(
        self,
        capacity_wh: float = 60_000.0,
        soc_pct: float = 50.0,
        *,
        cells_in_series: int = 108,
        internal_resistance_ohm: float = 0.1,
        max_charge_power_w: float = 100_000.0,
        max_discharge_power_w: float = 50_000.0,
        taper_start_soc_pct: float = 80.0,
        min_taper_fraction: float = 0.02,
        min_soc_pct: float = 20.0,
        discharge_taper_width_pct: float = 10.0,
        charge_efficiency: float = 1.0,
    ) -> None:
        if capacity_wh <= 0.0:
            raise ValueError(f"capacity_wh must be > 0, got {capacity_wh}")
        if cells_in_series <= 0:
            raise ValueError(f"cells_in_series must be > 0, got {cells_in_series}")
        if internal_resistance_ohm < 0.0:
            raise ValueError("internal_resistance_ohm must be >= 0")
        if max_charge_power_w < 0.0 or max_discharge_power_w < 0.0:
            raise ValueError("power limits must be >= 0")
        if not 0.0 <= taper_start_soc_pct < 100.0:
            raise ValueError("taper_start_soc_pct must be in [0, 100)")
        if not 0.0 <= min_taper_fraction <= 1.0:
            raise ValueError("min_taper_fraction must be in [0, 1]")
        if not 0.0 <= min_soc_pct < 100.0:
            raise ValueError("min_soc_pct must be in [0, 100)")
        if discharge_taper_width_pct <= 0.0:
            raise ValueError("discharge_taper_width_pct must be > 0")
        if not 0.0 < charge_efficiency <= 1.0:
            raise ValueError("charge_efficiency must be in (0, 1]")
        self.capacity_wh = capacity_wh
        self.cells_in_series = cells_in_series
        self.internal_resistance_ohm = internal_resistance_ohm
        self.max_charge_power_w = max_charge_power_w
        self.max_discharge_power_w = max_discharge_power_w
        self.taper_start_soc_pct = taper_start_soc_pct
        self.min_taper_fraction = min_taper_fraction
        self.min_soc_pct = min_soc_pct
        self.discharge_taper_width_pct = discharge_taper_width_pct
        self.charge_efficiency = charge_efficiency
        self._soc_pct = 0.0
        self.soc_pct = soc_pct
        # Bookkeeping at the terminals, so a test can check energy balance.
        self.charged_wh = 0.0  # energy that went in at the terminals
        self.discharged_wh = 0.0  # energy that came out at the terminals
        self.losses_wh = 0.0  # resistive + charge-efficiency losses
        self.current_a = 0.0  # current of the last step

    # -- state ------------------------------------------------------------

    @property
    def soc_pct(self) -> float:
        return self._soc_pct

    @soc_pct.setter
    def soc_pct(self, value: float) -> None:
        if not 0.0 <= value <= 100.0:  # also rejects nan
            raise ValueError(f"soc_pct must be within 0..100, got {value}")
        self._soc_pct = float(value)

    @property
    def stored_energy_wh(self) -> float:
        return self.capacity_wh * self._soc_pct / 100.0

    @property
    def is_full(self) -> bool:
        return self._soc_pct >= 100.0

    @property
    def min_voltage_v(self) -> float:
        return CELL_MIN_OCV_V * self.cells_in_series

    @property
    def max_voltage_v(self) -> float:
        return CELL_MAX_OCV_V * self.cells_in_series

    # -- electrical -------------------------------------------------------

    def open_circuit_voltage_v(self, soc_pct: float | None = None) -> float:
        soc = self._soc_pct if soc_pct is None else soc_pct
        return cell_ocv_v(soc) * self.cells_in_series

    def terminal_voltage_v(self, current_a: float) -> float:
        """Voltage at the pack terminals while ``current_a`` flows (+ charging)."""
        return self.open_circuit_voltage_v() + current_a * self.internal_resistance_ohm

    def current_for_power_a(self, power_w: float) -> float:
        """Current that gives ``power_w`` at the terminals (+ charging).

        Solves ``P = (OCV + I*R) * I``; for a discharge beyond the maximum
        transferable power the current of that maximum is returned.
        """
        ocv = self.open_circuit_voltage_v()
        r = self.internal_resistance_ohm
        if r == 0.0:
            return power_w / ocv
        disc = ocv * ocv + 4.0 * r * power_w
        if disc <= 0.0:
            return -ocv / (2.0 * r)
        return (-ocv + math.sqrt(disc)) / (2.0 * r)

    # -- BMS limits -------------------------------------------------------

    def charge_power_limit_w(self) -> float:
        """Constant up to the taper start, then falling linearly towards full
        (with a small floor so the last percent still finishes); 0 when full."""
        if self.is_full:
            return 0.0
        span = 100.0 - self.taper_start_soc_pct
        fraction = min(1.0, (100.0 - self._soc_pct) / span)
        return self.max_charge_power_w * max(self.min_taper_fraction, fraction)

    def discharge_power_limit_w(self) -> float:
        """Magnitude allowed for V2G: full well above ``min_soc_pct``, dropping
        linearly to 0 at ``min_soc_pct`` so the driver keeps a reserve."""
        fraction = (self._soc_pct - self.min_soc_pct) / self.discharge_taper_width_pct
        return self.max_discharge_power_w * min(1.0, max(0.0, fraction))

    # -- physics ----------------------------------------------------------

    def step(self, current_a: float, dt_s: float) -> None:
        """Let ``current_a`` flow for ``dt_s`` and update SoC and bookkeeping."""
        if dt_s < 0.0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        self.current_a = current_a
        if dt_s == 0.0 or current_a == 0.0:
            return
        ocv = self.open_circuit_voltage_v()
        terminal_wh = (ocv + current_a * self.internal_resistance_ohm) * current_a * dt_s / 3600.0
        if current_a > 0.0:
            chemical_wh = ocv * current_a * dt_s / 3600.0 * self.charge_efficiency
        else:
            chemical_wh = ocv * current_a * dt_s / 3600.0
        before_wh = self.stored_energy_wh
        after_wh = min(self.capacity_wh, max(0.0, before_wh + chemical_wh))
        self._soc_pct = after_wh / self.capacity_wh * 100.0
        stored_delta_wh = after_wh - before_wh
        if terminal_wh >= 0.0:
            self.charged_wh += terminal_wh
        else:
            self.discharged_wh += -terminal_wh
        # Whatever went in at the terminals and is not in the store was lost
        # (I²R heat, charge inefficiency, or clipped at full). Forcing current
        # out of an empty pack makes this negative: the model has no cut-off.
        self.losses_wh += terminal_wh - stored_delta_wh
        if after_wh in (0.0, self.capacity_wh) and after_wh != before_wh:
            _log.debug("battery reached %.1f %% SoC", self._soc_pct)
