"""The far side of a DC charger for ``bench/safety_latency.py --slow-stage``.

Runs in its own process (so its work never steals the bench's GIL): a simulated
bidirectional power module behind an slcan TCP server (the service's real CAN
driver connects to it) whose Off ramps the current down in ``--off-s`` whatever
the load, and a simulated
car that speaks ISO 15118-20 to the service's V2G server over plain TCP on ``::1``.
The pilot board itself is played by the bench; the two processes keep the CP line
and the contactor in step with one text line per change on stdin/stdout:

* bench -> rig: ``pilot X1|PWM|F <duty_pct>``, ``contactor 0|1``, ``plug``, ``unplug``;
* rig -> bench: ``slcan <port>`` once, then ``cp A|B|C|D|E`` (the car's S2),
  ``opened <a>`` (the current through the contactor when it opened),
  ``current <a>`` every 50 ms, ``off <t_cmd> <t_done>`` (``time.perf_counter``, the
  same clock in both processes) when the module saw an Off and when its current
  fell below 1 A.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import can  # noqa: E402

from chargepoint.iec61851.cp_state import PilotOutput  # noqa: E402
from hal.power_can.simulated import SimulatedPowerModule  # noqa: E402
from hal.power_can.slcan_server import SlcanTcpServer  # noqa: E402
from hal.power_stage import PowerMode, PowerStageCapabilities  # noqa: E402
from hal.sim.battery import Battery  # noqa: E402
from hal.sim.ev import SimulatedEv  # noqa: E402
from hal.sim.evcc import CarControls, CarProfile, SimulatedCar  # noqa: E402
from hal.sim.plant import Plant  # noqa: E402
from hal.sim.world import SimWorld  # noqa: E402

CAPABILITIES = PowerStageCapabilities(
    min_voltage_v=150.0,
    max_voltage_v=920.0,
    max_export_current_a=100.0,
    max_export_power_w=30_000.0,
    max_import_current_a=100.0,
    max_import_power_w=30_000.0,
    bidirectional=True,
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(v2g_port: int, off_s: float) -> None:
    plant = Plant(grid_voltage_v=800.0)
    ev = SimulatedEv(plant, Battery(capacity_wh=60_000.0, soc_pct=40.0))
    world = SimWorld(plant, ev=ev)
    channel = f"bench-dc-rig-{id(plant):x}"
    module_bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    server_bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    module = SimulatedPowerModule(
        module_bus, 1, plant, CAPABILITIES, off_current_slew_a_per_s=1.0 / off_s
    )
    server = SlcanTcpServer(server_bus)
    await server.start()
    say(f"slcan {server.port}")
    profile = CarProfile(services=("DC",), tls=False, loop_interval_s=0.05)
    car_task: asyncio.Task[object] | None = None

    async def drive_car() -> None:
        car = SimulatedCar(ev, profile, CarControls(target_soc_pct=100.0))
        await car.run(host_port=("::1", v2g_port), check=False)

    async def commands() -> None:
        nonlocal car_task
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            match line:
                case ["pilot", output, duty]:
                    plant.pilot_output = PilotOutput[output]
                    plant.duty_pct = float(duty)
                case ["contactor", closed]:
                    if plant.contactor_closed and closed == "0":
                        say(f"opened {module.current_a:.1f}")  # the current it broke
                    plant.contactor_closed = closed == "1"
                case ["plug"]:
                    ev.plug()
                    car_task = asyncio.create_task(drive_car())
                case ["unplug"]:
                    if car_task is not None:
                        car_task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await car_task
                        car_task = None
                    ev.unplug()

    async def report() -> None:
        cp = None
        off_cmd: float | None = None
        last_current = 0.0
        mode = module.mode
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            if module.mode is not PowerMode.OFF:
                # an Off under load takes off_s whatever the current (a slow converter)
                module.off_current_slew_a_per_s = max(abs(module.current_a), 1.0) / off_s
            if ev.cp_state is not cp:
                cp = ev.cp_state
                say(f"cp {cp.value}")
            if module.mode is not mode:
                mode = module.mode
                if mode is PowerMode.OFF:
                    off_cmd = now
            if off_cmd is not None and abs(module.current_a) < 1.0:
                say(f"off {off_cmd:.6f} {now:.6f}")
                off_cmd = None
            if now - last_current >= 0.05:
                last_current = now
                say(f"current {module.current_a:.1f}")

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(world.run(period_s=0.005))
            tasks.create_task(module.run())
            tasks.create_task(report())
            await commands()  # stdin closed: the bench is gone
            raise SystemExit(0)
    finally:
        await server.close()
        module_bus.shutdown()
        server_bus.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--v2g-port", type=int, required=True)
    parser.add_argument("--off-s", type=float, default=0.4, help="Off under load takes this long")
    args = parser.parse_args()
    with contextlib.suppress(SystemExit, KeyboardInterrupt):
        asyncio.run(main(args.v2g_port, args.off_s))
