"""Start-up time: process start -> V2G server listening, and -> BootNotification received.

Spawns ``chargepoint run`` on a DC_BPT station with ``[iso15118]`` (TLS 1.3 on
``[::1]:PORT``, a fixed free port of the dynamic range so it can be probed) and
``[csms]`` (the OCPP test CSMS of tests/ocpp/csms.py in this process, which
stamps the arrival of the BootNotification). From just before the process is
spawned, the bench tries a TCP connect to the V2G port every millisecond
until one is accepted. One warm-up start (not counted) writes the byte code
and creates the test PKI and the state directory that the timed starts then
find, as a service restarted on an installed charger does.

    python bench/startup.py [--runs 10] [--installed | --python PATH]

Interpreter: the dev venv (``.venv``: ``python -m chargepoint``, byte-compiled
by the warm-up start) unless ``--installed`` (a fresh venv with ``pip install``
of the working tree, as bench/memory.py builds it: the ``chargepoint`` console
script) or ``--python``. Target: median <= 1 s to both.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from memory import build_venv, user_env  # noqa: E402
from secc_loop import machine, v2g_config  # noqa: E402

TARGET_S = 1.0
PROBE_S = 0.001
RUN_TIMEOUT_S = 60.0
DYNAMIC_PORTS = (49152, 65535)


@dataclass
class Start:
    listening_s: float | None
    boot_s: float | None

    def __str__(self) -> str:
        def s(value: float | None) -> str:
            return "timed out" if value is None else f"{value:.3f} s"

        return f"listening {s(self.listening_s)}, BootNotification {s(self.boot_s)}"


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_dynamic_port() -> int:
    """A port of 49152-65535 free on ::1 now (the service binds it a moment later).

    Taken above the kernel's ephemeral range where it can be, so that an outgoing
    connection of another program cannot take it between this probe and the bind."""
    low, high = DYNAMIC_PORTS
    if ephemeral_range()[1] < high:
        low = max(low, ephemeral_range()[1] + 1)
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("::1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port in the dynamic range")


def write_config(tmp: Path, csms_port: int, v2g_port: int) -> Path:
    text = v2g_config(tmp, csms_port=csms_port, tls=True, simulated_car=True)
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "bench.toml"
    cfg.write_text(text.replace("\nport = 0\n", f"\nport = {v2g_port}\n", 1))
    return cfg


async def accepting(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Return once a TCP connection to [::1]:port is accepted (or the service is gone)."""
    while proc.poll() is None:
        try:
            _reader, writer = await asyncio.open_connection("::1", port)
        except OSError:
            await asyncio.sleep(PROBE_S)
            continue
        writer.close()
        return


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no service log)"


async def one_start(service: list[str], tmp: Path, csms: Any, service_log: Path) -> Start:
    port = free_dynamic_port()
    cfg = write_config(tmp, csms.port, port)
    boot: list[float] = []
    record = csms.record

    def stamped(direction: str, frame: Any) -> None:
        if (
            not boot
            and direction == "in"
            and isinstance(frame, list)
            and frame[:1] == [2]
            and frame[2] == "BootNotification"
        ):
            boot.append(time.perf_counter())
        record(direction, frame)

    csms.record = stamped
    quiet_log = open(service_log, "ab")  # noqa: SIM115, ASYNC230 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen(  # noqa: ASYNC220 - the start is what is timed
        [*service, "run", "--config", str(cfg)],
        cwd=tmp,
        env=user_env(),
        stdout=quiet_log,
        stderr=subprocess.STDOUT,
    )
    quiet_log.close()  # the child has its own copy
    listening: float | None = None
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await accepting(port, proc)
            if proc.poll() is None:
                listening = time.perf_counter()
            while not boot:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the service exited with {proc.returncode}; the end of its log "
                        f"({service_log}):\n{log_tail(service_log)}"
                    )
                await asyncio.sleep(PROBE_S)
    except TimeoutError:
        what = "BootNotification" if listening else "V2G listener"
        print(f"  no {what} within {RUN_TIMEOUT_S} s")
    finally:
        csms.record = record
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Start(
        None if listening is None else listening - started,
        boot[0] - started if boot else None,
    )


def spread(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "no value"
    missing = len(values) - len(got)
    text = (
        f"median {statistics.median(got):.3f} s  min {min(got):.3f} s  max {max(got):.3f} s"
        f"  ({len(got)} runs)"
    )
    return text + (f"; {missing} run(s) timed out" if missing else "")


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="chargepoint-startup-"))
    if args.python:
        service = [args.python, "-m", "chargepoint"]
        how = f"{args.python} -m chargepoint"
    elif args.installed:
        service = [str(build_venv(tmp / "install"))]
        how = "a fresh venv, pip install of the working tree (console script `chargepoint`)"
    else:
        service = [str(ROOT / ".venv" / "bin" / "python"), "-m", "chargepoint"]
        how = "the dev venv (.venv, editable install), python -m chargepoint"
    csms = importlib.import_module("tests.ocpp.csms").Csms()
    await csms.start()
    log = Path(os.environ.get("BENCH_SERVICE_LOG", tmp / "service.log"))
    runs: list[Start] = []
    try:
        warm = await one_start(service, tmp / "svc", csms, log)
        print(f"warm-up start (byte code, test PKI, state dir created; not counted): {warm}")
        for i in range(args.runs):
            run = await one_start(service, tmp / "svc", csms, log)
            runs.append(run)
            print(f"  run {i + 1}: {run}")
    finally:
        await csms.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(machine())
    print(f"service: {how}; byte-compiled; [iso15118] TLS 1.3 on ::1, [csms] on 127.0.0.1")
    listening = [r.listening_s for r in runs]
    boots = [r.boot_s for r in runs]
    print(f"process start -> V2G server accepting TCP:   {spread(listening)}")
    print(f"process start -> BootNotification received: {spread(boots)}")
    complete = [[v for v in values if v is not None] for values in (listening, boots)]
    medians = [statistics.median(v) for v in complete if v and len(v) == len(runs)]
    worst = max(medians) if len(medians) == 2 else float("inf")
    verdict = "met" if worst <= TARGET_S else "NOT met"
    print(f"target median <= {TARGET_S} s to both: {verdict} ({worst / TARGET_S:.2f}x)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--installed", action="store_true", help="build a venv, pip install")
    group.add_argument("--python", help="an interpreter with chargepoint installed")
    args = parser.parse_args(argv)
    if args.python:
        args.python = os.path.abspath(args.python)  # not resolved: it may be a venv's
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
