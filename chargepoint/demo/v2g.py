"""``chargepoint demo``: an ISO 15118-20 DC_BPT session on simulated hardware, over TLS 1.3.

The simulated car (our own EVCC, a peer of the SECC) plugs in, finds the
charger by SDP on the IPv6 loopback, runs the handshake, cable check and
pre-charge, charges, gives energy back while the operator asks for a negative
set-point, charges again, stops (welding detection) and unplugs. Everything
goes through the service's real control socket and wire protocols: the pilot
board on a pty, the power module on CAN, the car over TCP/TLS.

The summary checks the energy delivered and returned against the meter's
import and export registers.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, TextIO

from chargepoint.app import Station
from chargepoint.config import Config
from chargepoint.demo.basic import DemoControl, DemoError, run_with_station

STEP_TIMEOUT_S = 30.0
ENERGY_TOLERANCE_WH = 1e-6
DISCHARGE_W = -8_000.0


def demo_config(config: Config, tmp: Path) -> Config:
    """The given configuration, made private to this run: any free ports, its own state."""
    iso = config.iso15118
    if iso is None:
        raise DemoError("the demo configuration has no [iso15118] section")
    runtime = config.runtime.model_copy(update={"state_dir": tmp / "state"})
    iso = iso.model_copy(update={"port": 0, "sdp_port": 0, "test_pki_dir": tmp / "pki"})
    return config.model_copy(update={"runtime": runtime, "iso15118": iso})


async def run_v2g_demo(config: Config, *, phase_s: float, out: TextIO) -> int:
    evse = config.evse[0].id
    with tempfile.TemporaryDirectory(prefix="chargepoint-demo-") as tmp_name:
        tmp = Path(tmp_name)
        station = Station(demo_config(config, tmp), control_socket=tmp / "control.sock")
        return await run_with_station(
            station, lambda: _session(station.control_socket, evse, phase_s, out), out
        )


async def _session(sock: Path, evse: int, phase_s: float, out: TextIO) -> int:
    control = DemoControl(sock, evse, STEP_TIMEOUT_S)
    sim, status, wait_for = control.sim, control.status, control.wait_for

    async def show(seconds: float, label: str) -> None:
        print(f"-- {label}", file=out, flush=True)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (now := loop.time()) < end:
            print(_line(await status()), file=out, flush=True)
            await asyncio.sleep(min(1.0, max(0.0, end - now)))

    has_plc = (await status()).get("slac") is not None
    plc = "SLAC over a simulated PLC link" if has_plc else "no PLC link configured"
    print(f"EVSE {evse}: plugging in the simulated ISO 15118-20 car ({plc})", file=out)
    await sim("discharge", "on")  # the driver allows V2G in the car
    await sim("plug")
    if has_plc:
        st = await wait_for(
            "the PLC link (SLAC)", lambda s: (s.get("slac") or {}).get("link_ready")
        )
        slac = st["slac"]
        attenuation = slac["attenuation_db"]
        print(
            f"EVSE {evse}: SLAC matched car {slac['ev_mac']} in {slac['match_time_s']:.3f} s "
            f"(NID {slac['nid']}, attenuation "
            f"{'-' if attenuation is None else f'{attenuation:.1f} dB'}): PLC link ready",
            file=out,
        )
    print(_header(), file=out)
    await _follow_until(status, out, lambda s: _iso(s).get("state") == "charge_loop")
    st = await status()
    iso = _iso(st)
    print(
        f"EVSE {evse}: {iso['service']} {iso['control_mode']} over "
        f"{'TLS 1.3' if iso['tls'] else 'plain TCP'}, energy flowing",
        file=out,
    )
    await show(phase_s, "charging")
    await sim("setpoint", str(DISCHARGE_W))
    await wait_for("discharge", lambda s: (_iso(s).get("evse_current_a") or 0.0) < -1.0)
    await show(phase_s, f"operator set-point {DISCHARGE_W / 1000:g} kW: energy back from the car")
    await sim("setpoint", "off")
    await wait_for("charging again", lambda s: (_iso(s).get("evse_current_a") or 0.0) > 1.0)
    await show(phase_s, "charging again")
    print(f"EVSE {evse}: the driver ends the session", file=out)
    await sim("stop")
    await _follow_until(status, out, lambda s: _iso(s).get("state") in ("ended", "idle"))
    st = await wait_for("contactors open", lambda s: not s["permission"] and s["cp"] == "B")
    print(_line(st), file=out)
    print(f"EVSE {evse}: unplugging", file=out)
    await sim("unplug")
    st = await wait_for(
        "the session summary",
        lambda s: s["state"] == "idle" and s["last_session"] is not None,
    )
    if has_plc:
        st = await wait_for("the PLC link left", lambda s: s["slac"]["state"] == "idle")
        print(f"EVSE {evse}: PLC link left ({st['slac']['last_lost']})", file=out)
    return _summary(st, out)


async def _follow_until(status: Any, out: TextIO, done: Any) -> None:
    """Print a line whenever the -20 message changes, until ``done``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + STEP_TIMEOUT_S
    last = None
    while True:
        st = await status()
        key = (_iso(st).get("last_request"), st["cp"], st["state"])
        if key != last:
            print(_line(st), file=out, flush=True)
            last = key
        if done(st):
            return
        if loop.time() > end:
            raise DemoError(f"the session did not get there; last status {st}")
        await asyncio.sleep(0.02)


def _iso(st: dict[str, Any]) -> dict[str, Any]:
    iso: dict[str, Any] = st.get("iso15118") or {}
    return iso


def _header() -> str:
    return (
        f"{'-20 message':<30} {'CP':<3} {'EVSE V':>7} {'EV V':>7} {'I A':>8} "
        f"{'P kW':>7} {'SoC %':>6}"
    )


def _line(st: dict[str, Any]) -> str:
    iso = _iso(st)
    car = st.get("car") or {}
    evse_v = iso.get("evse_voltage_v")
    evse_i = iso.get("evse_current_a")
    ev_v = car.get("battery_voltage_v")
    power_kw = (evse_v or 0.0) * (evse_i or 0.0) / 1000.0
    soc = car.get("soc_pct")

    def num(value: float | None, width: int, digits: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    return (
        f"{iso.get('last_request') or '-':<30} {st['cp'] or '-':<3} {num(evse_v, 7, 1)} "
        f"{num(ev_v, 7, 1)} {num(evse_i, 8, 1)} {power_kw:>7.2f} {num(soc, 6, 2)}"
    )


def _summary(st: dict[str, Any], out: TextIO) -> int:
    s = st["last_session"]
    meter = st["meter"]
    report = st.get("car_report") or {}
    print("\nsession summary", file=out)
    print(f"  session            #{s['number']} ({s['end_reason']})", file=out)
    print(
        f"  -20 session        {report.get('end_reason', '?')}, {report.get('loops', 0)} "
        f"charge loops, {report.get('service')} {report.get('control_mode')}",
        file=out,
    )
    print(f"  duration           {s['duration_s']:.1f} s", file=out)
    print(f"  energy delivered   {s['energy_imported_wh']:.3f} Wh", file=out)
    print(f"  energy returned    {s['energy_exported_wh']:.3f} Wh", file=out)
    print(
        f"  meter import       {s['meter_start_import_wh']:.3f} -> "
        f"{s['meter_end_import_wh']:.3f} Wh (register now {meter['import_energy_wh']:.3f} Wh)",
        file=out,
    )
    print(
        f"  meter export       {s['meter_start_export_wh']:.3f} -> "
        f"{s['meter_end_export_wh']:.3f} Wh (register now {meter['export_energy_wh']:.3f} Wh)",
        file=out,
    )
    if s["energy_imported_wh"] <= 0.0:
        raise DemoError("no energy was delivered")
    if s["energy_exported_wh"] <= 0.0:
        raise DemoError("no energy came back from the car")
    if abs(s["meter_end_import_wh"] - meter["import_energy_wh"]) > ENERGY_TOLERANCE_WH:
        raise DemoError("energy delivered does not match the meter's import register")
    if abs(s["meter_end_export_wh"] - meter["export_energy_wh"]) > ENERGY_TOLERANCE_WH:
        raise DemoError("energy returned does not match the meter's export register")
    if report and not report.get("ok", False):
        raise DemoError(f"the car reports a failed session: {report.get('error')}")
    print("  OK: delivered and returned energy match the meter's import and export registers",
          file=out)  # fmt: skip
    return 0
