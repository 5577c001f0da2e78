"""Resident memory of the running service across simulated sessions.

Basic mode (as before): starts ``chargepoint run`` from the dev venv on
config/sim.toml (IEC 61851-1 basic AC charging), drives N complete sessions
(plug, charge, EV stops, unplug) through the control socket, and reads the
service's VmRSS from /proc after each session.

    python bench/memory.py [--sessions 100] [--charge-s 0.3]

Installed mode (``--installed-v2g``): the service as a user installs it. A
fresh venv in a temporary directory gets ``pip install`` of a copy of the
working tree (not editable; byte-compiled, PYTHONDONTWRITEBYTECODE removed for
the install and the service), and its ``chargepoint run`` serves a DC_BPT
station with ``[csms]`` (the OCPP test CSMS of tests/ocpp/csms.py, in this
process, meter values every second) and ``[iso15118]`` (TLS 1.3, mutual; our
simulated car). Each session: plug -> the -20 session reaches the charge loop
-> ``--loop-s`` in it -> car ``stop`` -> the session ends -> unplug.

    python bench/memory.py --installed-v2g [--sessions 100] [--loop-s 0.5] [--breakdown]
        [--python PATH]   # an interpreter that has chargepoint installed: no venv is built

``--breakdown`` adds what the RSS is made of: idle RSS with and without
``[csms]`` / ``[iso15118]``, RSS and traced Python memory after each group of
imports, tracemalloc by package after a few sessions, and the resident
mappings (/proc/PID/smaps) of the service.

Target (issue 2): <= 60 MB after 100 sessions and no growth between session
10 and session 100.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


TARGET_MB = 60.0
SOURCE_ITEMS = ("pyproject.toml", "README.md", "chargepoint", "hal")
REPORT_SAMPLES = (1, 10, 25, 50, 75, 100)
CONTROL_LIMIT = 64 * 1024 * 1024
UNPLUGGED_S = 0.2  # > 2 x app.CAR_POLL_S: the simulated car must see the unplug


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def resident_mappings(pid: int) -> dict[str, float]:
    """RSS (MB) per mapping of /proc/PID/smaps: shared objects by package, anon, heap."""
    rss: dict[str, float] = {}
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if not parts[0].endswith(":"):  # a mapping's header line
            path = parts[5] if len(parts) > 5 else ""
            name = _mapping_name(path)
        elif parts[0] == "Rss:":
            rss[name] = rss.get(name, 0.0) + int(parts[1]) / 1024
    return dict(sorted(rss.items(), key=lambda kv: -kv[1]))


def _mapping_name(path: str) -> str:
    if not path:
        return "[anon]"
    if path.startswith("["):
        return path
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        return f"{package} (.so)"
    return Path(path).name


# --------------------------------------------------------------------------- basic mode


async def request(sock: Path, message: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """One control-socket round trip. Not control_socket.request(): the status of the
    simulated -20 car grows with every session (its report keeps all of them)."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_unix_connection(sock, limit=CONTROL_LIMIT)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    answer: dict[str, Any] = json.loads(line)
    return answer


async def evse(sock: Path) -> dict[str, Any]:
    answer = await request(sock, {"cmd": "status"})
    status: dict[str, Any] = answer["result"]["evse"][0]
    return status


async def wait_for(sock: Path, check: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        st = await evse(sock)
        if check(st):
            return st
        if loop.time() > end:
            raise TimeoutError(f"last status {st}")
        await asyncio.sleep(0.02)


async def sim(sock: Path, name: str) -> None:
    answer = await request(sock, {"cmd": "sim", "evse": 1, "name": name, "args": []})
    assert answer["ok"], answer


async def session(sock: Path, charge_s: float) -> float:
    await sim(sock, "plug")
    await wait_for(sock, lambda s: s["state"] == "charging" and s["contactor_closed"])
    await asyncio.sleep(charge_s)
    await sim(sock, "stop")
    await wait_for(sock, lambda s: s["cp"] == "B" and not s["contactor_closed"])
    await sim(sock, "unplug")
    st = await wait_for(sock, lambda s: s["state"] == "idle" and not s["session_active"])
    energy: float = st["last_session"]["energy_imported_wh"]
    return energy


async def wait_for_socket(sock: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if sock.exists():  # noqa: ASYNC240 - one stat() per 50 ms, before measuring
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no control socket {sock} after {timeout_s} s")


async def main_basic(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="chargepoint-mem-"))
    sock = tmp / "control.sock"
    text = (ROOT / "config" / "sim.toml").read_text()
    text = text.replace('"/tmp/chargepoint-sim.sock"', f'"{sock}"')
    text = text.replace('"/tmp/chargepoint-sim"', f'"{tmp / "state"}"')
    cfg = tmp / "sim.toml"
    cfg.write_text(text)
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
        [sys.executable, "-m", "chargepoint", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: dict[int, float] = {}
    try:
        await wait_for_socket(sock, proc, 20)
        samples[0] = rss_mb(proc.pid)
        total_wh = 0.0
        for n in range(1, args.sessions + 1):
            total_wh += await session(sock, args.charge_s)
            samples[n] = rss_mb(proc.pid)
            if n in REPORT_SAMPLES or n == args.sessions:
                print(f"after session {n:3d}: RSS {samples[n]:.1f} MB", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)
    last = args.sessions
    ten = min(10, last)
    growth = samples[last] - samples[ten]
    print(f"sessions: {last}, energy delivered in total {total_wh:.1f} Wh")
    print(f"RSS at start {samples[0]:.1f} MB, after {ten} {samples[ten]:.1f} MB, ")
    print(f"after {last}: {samples[last]:.1f} MB; growth {ten} -> {last}: {growth:+.2f} MB")
    print(f"target <= {TARGET_MB:.0f} MB: {'met' if samples[last] <= TARGET_MB else 'NOT met'}")
    return 0


# --------------------------------------------------------------------------- installed mode


def user_env() -> dict[str, str]:
    """The environment of a user's shell: byte-code writing on, nothing of ours on the path."""
    drop = ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def build_venv(dest: Path, log: Callable[[str], None] = print) -> Path:
    """A fresh venv in ``dest`` with ``pip install`` of a copy of the working tree.

    The copy keeps pip's build directory out of the working tree. Returns the
    venv's ``chargepoint`` console script.
    """
    src = dest / "src"
    src.mkdir(parents=True)
    for item in SOURCE_ITEMS:
        path = ROOT / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / item)
    venv = dest / "venv"
    started = time.perf_counter()
    env = user_env()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(src)],
        env=env,
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode != 0:
        raise RuntimeError(f"pip install failed ({pip.returncode}):\n{pip.stderr[-4000:]}")
    shutil.rmtree(src)
    pyc = list((venv / "lib").glob("python3*/site-packages/chargepoint/__pycache__/app.*.pyc"))
    if not pyc:
        raise RuntimeError("pip did not byte-compile chargepoint (no app.*.pyc)")
    took = time.perf_counter() - started
    log(f"venv: {venv} (pip install, not editable, byte-compiled) in {took:.0f} s")
    return venv / "bin" / "chargepoint"


def service_argv(service: list[str], cfg: Path) -> list[str]:
    return [*service, "run", "--config", str(cfg)]


def interpreter_service(python: str) -> list[str]:
    return [python, "-m", "chargepoint"]


async def start_csms() -> Any:
    """tests/ocpp/csms.py (dev venv only; not type-checked with the project)."""
    csms = importlib.import_module("tests.ocpp.csms").Csms()
    await csms.start()
    return csms


async def v2g_session(sock: Path, loop_s: float, number: int) -> dict[str, Any]:
    """plug -> charge loop -> loop_s -> car stop -> session end -> unplug -> idle."""
    await sim(sock, "plug")
    await wait_for(sock, lambda s: s["iso15118"]["state"] == "charge_loop", 30)
    await asyncio.sleep(loop_s)
    await sim(sock, "stop")
    await wait_for(
        sock,
        lambda s: s["iso15118"]["sessions"] >= number and not s["contactor_closed"],
        30,
    )
    await sim(sock, "unplug")
    st = await wait_for(sock, lambda s: s["state"] == "idle" and not s["session_active"], 30)
    await asyncio.sleep(UNPLUGGED_S)  # the car polls the plant for the unplug
    return st


class Service:
    """``chargepoint run`` in a subprocess on a private DC_BPT configuration."""

    def __init__(
        self,
        service: list[str],
        tmp: Path,
        *,
        csms_port: int | None,
        iso15118: bool,
        tls: bool = True,
        loop_interval_s: float = 0.1,
        wrapper: list[str] | None = None,
    ) -> None:
        from secc_loop import v2g_config  # noqa: PLC0415 - bench/ is on the path below

        tmp.mkdir(parents=True, exist_ok=True)
        self.sock = tmp / "control.sock"
        cfg = tmp / "bench.toml"
        cfg.write_text(
            v2g_config(
                tmp,
                csms_port=csms_port,
                tls=tls,
                simulated_car=True,
                loop_interval_s=loop_interval_s,
                iso15118=iso15118,
            )
        )
        argv = [*wrapper, str(cfg)] if wrapper is not None else service_argv(service, cfg)
        self.proc = subprocess.Popen(
            argv,
            cwd=tmp,
            env=user_env(),
            stdout=open(os.environ.get("BENCH_SERVICE_LOG", os.devnull), "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ready(self, timeout_s: float = 60.0) -> None:
        await wait_for_socket(self.sock, self.proc, timeout_s)
        await wait_for(self.sock, lambda s: s["state"] == "idle", timeout_s)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def run_sessions(
    svc: Service,
    sessions: int,
    loop_s: float,
    samples: dict[int, float],
    *,
    quiet: bool = False,
    first: int = 1,
) -> float:
    started = time.perf_counter()
    for n in range(first, first + sessions):
        st = await v2g_session(svc.sock, loop_s, n)
        samples[n] = rss_mb(svc.pid)
        if n == 1 and st["car_report"] is not None and not st["car_report"]["ok"]:
            raise RuntimeError(f"session 1 failed: {st['car_report']}")
        if not quiet and (n in REPORT_SAMPLES or n == first + sessions - 1):
            size = len(json.dumps(st)) / 1024
            print(f"after session {n:3d}: RSS {samples[n]:.1f} MB (status answer {size:.0f} KiB)")
    return time.perf_counter() - started


async def main_installed(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="chargepoint-mem-v2g-"))
    if args.python:
        service = interpreter_service(args.python)
        print(f"service: {args.python} -m chargepoint (given interpreter; no venv built)")
    else:
        service = [str(build_venv(tmp))]
    csms = await start_csms()
    samples: dict[int, float] = {}
    svc = Service(service, tmp / "run", csms_port=csms.port, iso15118=True, tls=not args.no_tls)
    try:
        await svc.ready()
        await csms.until(lambda: csms.received("BootNotification"), 30)
        samples[0] = rss_mb(svc.pid)
        print(f"ready: RSS {samples[0]:.1f} MB", flush=True)
        took = await run_sessions(svc, args.sessions, args.loop_s, samples)
        mappings = resident_mappings(svc.pid)
        ocpp = len(csms.received())
    finally:
        svc.stop()
        await csms.stop()
    last = args.sessions
    ten = min(10, last)
    transport = "plain TCP" if args.no_tls else "TLS 1.3"
    print(f"sessions: {last} DC_BPT over {transport} in {took:.0f} s; OCPP messages: {ocpp}")
    print(
        f"RSS ready {samples[0]:.1f} MB, after 1 {samples[1]:.1f}, after {ten} {samples[ten]:.1f}, "
        f"after {last}: {samples[last]:.1f} MB; growth {ten} -> {last}: "
        f"{samples[last] - samples[ten]:+.2f} MB"
    )
    top = ", ".join(f"{k} {v:.1f}" for k, v in list(mappings.items())[:8])
    print(f"resident mappings (MB): {top}")
    print(f"target <= {TARGET_MB:.0f} MB: {'met' if samples[last] <= TARGET_MB else 'NOT met'}")
    if args.breakdown:
        await breakdown(service, tmp, args)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- breakdown

# Imports the stacks group by group, the way the service loads them, and prints
# the RSS (MB) after each group as JSON; no tracemalloc (it would inflate RSS).
IMPORT_GROUPS = r"""
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
marks = [["interpreter + site", rss()]]
for name, modules in json.loads(sys.argv[1]):
    for module in modules:
        __import__(module)
    marks.append([name, rss()])
print(json.dumps(marks))
"""

GROUPS: list[tuple[str, list[str]]] = [
    ("stdlib: asyncio, ssl, logging, json, sqlite3", ["asyncio", "ssl", "logging", "sqlite3"]),
    ("pydantic + chargepoint.config", ["pydantic", "chargepoint.config"]),
    ("chargepoint.app (python-can, transitions, pyserial, EVSE core)", ["chargepoint.app"]),
    ("chargepoint.cli", ["chargepoint.cli"]),
    (
        "[csms]: chargepoint OCPP adapters (ocpp, jsonschema, websockets, cryptography)",
        ["chargepoint.adapters.ocpp_bridge", "chargepoint.adapters.ocpp_client"],
    ),
    (
        "[iso15118]: SECC, EXI codec, V2G TLS/PKI, SDP",
        [
            "chargepoint.adapters.iso15118_setup",
            "chargepoint.adapters.v2g_server",
            "chargepoint.adapters.sdp_server",
        ],
    ),
    ("simulated -20 car (hal.sim.evcc)", ["hal.sim.evcc"]),
]

# Each alone in a fresh interpreter: RSS over the bare interpreter.
STANDALONE = (
    "asyncio",
    "ssl",
    "sqlite3",
    "pydantic",
    "can",
    "transitions",
    "serial",
    "websockets.asyncio.client",
    "jsonschema",
    "cryptography.x509",
    "ocpp.v201",
    "ocpp.v21",
    "chargepoint.config",
    "chargepoint.app",
    "chargepoint.adapters.ocpp_client",
    "chargepoint.adapters.ocpp_bridge",
    "chargepoint.iso15118.exi",
    "chargepoint.iso15118.secc.session",
    "chargepoint.adapters.v2g_pki",
    "hal.sim.evcc",
)

# Runs `chargepoint run` in the service's own interpreter under tracemalloc; each
# SIGUSR1 dumps a snapshot to argv[1].N (the service stalls meanwhile: its
# keep-alive faults latch, and the bench clears them).
TRACED_SERVICE = r"""
import os, signal, sys, tracemalloc
tracemalloc.start(12)
import chargepoint.cli
out_path, cfg = sys.argv[1], sys.argv[2]
count = [0]
def dump(signum, frame):
    count[0] += 1
    path = f"{out_path}.{count[0]}"
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.replace(path + ".tmp", path)
signal.signal(signal.SIGUSR1, dump)
sys.exit(chargepoint.cli.main(["run", "--config", cfg]))
"""


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    stdlib = sysconfig.get_paths()["stdlib"]
    if filename.startswith(stdlib):
        rest = filename[len(stdlib) :].lstrip("/").split("/", 1)[0]
        return "stdlib/" + rest.removesuffix(".py")
    return filename if filename.startswith("<") else "other"


def by_package(snapshot: tracemalloc.Snapshot) -> list[tuple[str, float]]:
    """Traced MB per package, each allocation charged to its nearest frame outside
    importlib (so code and data loaded by an import count for the importing package)."""
    sizes: dict[str, int] = {}
    for trace in snapshot.traces:
        owner = "<frozen>"
        for frame in reversed(trace.traceback):  # most recent first
            if not frame.filename.startswith("<frozen"):
                owner = _package(frame.filename)
                break
        sizes[owner] = sizes.get(owner, 0) + trace.size
    return sorted(((k, v / 2**20) for k, v in sizes.items()), key=lambda kv: -kv[1])


def _by_caller_line(snapshot: tracemalloc.Snapshot) -> dict[str, list[int]]:
    """[size, blocks] per nearest source line outside the stdlib and importlib."""
    stdlib = sysconfig.get_paths()["stdlib"]
    lines: dict[str, list[int]] = {}
    for trace in snapshot.traces:
        frames = list(reversed(trace.traceback))  # most recent first
        where = next(
            (f for f in frames if not f.filename.startswith(("<", stdlib))),
            frames[0],
        )
        short = where.filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        entry = lines.setdefault(f"{short}:{where.lineno}", [0, 0])
        entry[0] += trace.size
        entry[1] += 1
    return lines


def growth_by_line(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot
) -> list[tuple[str, int, int]]:
    """Largest changes (bytes, blocks), charged to the nearest line of non-stdlib code."""
    old, new = _by_caller_line(before), _by_caller_line(after)
    rows = [
        (key, new.get(key, [0, 0])[0] - old.get(key, [0, 0])[0],
         new.get(key, [0, 0])[1] - old.get(key, [0, 0])[1])
        for key in old.keys() | new.keys()
    ]  # fmt: skip
    return sorted(rows, key=lambda r: -abs(r[1]))[:10]


def service_python(service: list[str]) -> str:
    """The interpreter behind a service command (console script or ``python -m``)."""
    if len(service) > 1:
        return service[0]
    return str(Path(service[0]).parent / "python")


def load_when_written(path: Path, timeout_s: float = 120.0) -> tracemalloc.Snapshot:
    """The snapshot the traced service dumps on SIGUSR1 (blocking; run in a thread)."""
    end = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > end:
            raise TimeoutError(f"no {path} after {timeout_s} s")
        time.sleep(0.05)
    return tracemalloc.Snapshot.load(str(path))


def python_json(python: str, code: str, *args: str) -> Any:
    out = subprocess.run(
        [python, "-I", "-c", code, *args],
        env=user_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


async def idle_rss(service: list[str], tmp: Path, *, csms: bool, iso15118: bool) -> float:
    server = await start_csms() if csms else None
    svc = Service(service, tmp, csms_port=server.port if server else None, iso15118=iso15118)
    try:
        await svc.ready()
        if server is not None:
            await server.until(lambda: server.received("StatusNotification"), 30)
        await asyncio.sleep(2.0)  # let start-up settle (OCPP boot, first meter values)
        return rss_mb(svc.pid)
    finally:
        svc.stop()
        if server is not None:
            await server.stop()


async def breakdown(service: list[str], tmp: Path, args: argparse.Namespace) -> None:
    print("\nbreakdown")
    rows = []
    for csms in (False, True):
        for iso in (False, True):
            name = f"{'with' if csms else 'no'} [csms], {'with' if iso else 'no'} [iso15118]"
            rss = await idle_rss(service, tmp / f"idle-{csms}-{iso}", csms=csms, iso15118=iso)
            rows.append((name, rss))
            print(f"  idle after start-up, {name}: RSS {rss:.1f} MB", flush=True)
    base = rows[0][1]
    print(
        f"  so: [csms] +{rows[2][1] - base:.1f} MB, [iso15118] +{rows[1][1] - base:.1f} MB, "
        f"both +{rows[3][1] - base:.1f} MB over {base:.1f} MB"
    )

    python = service_python(service)
    print("  imports in the service's order (RSS after each group, no tracemalloc):")
    previous = 0.0
    for name, rss in python_json(python, IMPORT_GROUPS, json.dumps(GROUPS)):
        print(f"    {name:<80} {rss:6.1f} MB ({rss - previous:+5.1f})")
        previous = rss
    bare = python_json(python, IMPORT_GROUPS, "[]")[0][1]
    alone = []
    for module in STANDALONE:
        rss = python_json(python, IMPORT_GROUPS, json.dumps([[module, [module]]]))[1][1]
        alone.append(f"{module} +{rss - bare:.1f}")
    print(f"  each alone in a fresh interpreter (MB over {bare:.1f}): {', '.join(alone)}")

    out = tmp / "traced"
    server = await start_csms()
    svc = Service(
        service,
        tmp / "profile",
        csms_port=server.port,
        iso15118=True,
        wrapper=[python, "-I", "-c", TRACED_SERVICE, str(out)],
    )
    snapshots: list[tracemalloc.Snapshot] = []
    try:
        await svc.ready()
        samples: dict[int, float] = {}
        done = 0
        for n, count in enumerate((args.profile_sessions, args.growth_sessions), start=1):
            await run_sessions(svc, count, args.loop_s, samples, quiet=True, first=done + 1)
            done += count
            os.kill(svc.pid, signal.SIGUSR1)
            path = Path(f"{out}.{n}")
            snapshots.append(await asyncio.to_thread(load_when_written, path))
            await request(svc.sock, {"cmd": "clear-faults", "evse": 1})
            await wait_for(svc.sock, lambda s: s["state"] == "idle" and not s["faults"], 30)
    finally:
        svc.stop()
        await server.stop()
    first, second = snapshots
    traced = sum(t.size for t in first.traces) / 2**20
    top = ", ".join(f"{k} {v:.2f}" for k, v in by_package(first)[:16])
    print(
        f"  tracemalloc after {args.profile_sessions} sessions: {traced:.1f} MB traced Python "
        f"memory; by package (MB): {top}"
    )
    grown = sum(t.size for t in second.traces) / 2**20 - traced
    print(
        f"  traced growth over {args.growth_sessions} more sessions: {grown:+.3f} MB; "
        "largest by line:"
    )
    for where, size, blocks in growth_by_line(first, second)[:8]:
        print(f"    {size / 1024:+8.1f} KiB {blocks:+6d} blocks  {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--charge-s", type=float, default=0.3, help="basic mode: charging time")
    parser.add_argument(
        "--installed-v2g",
        action="store_true",
        help="pip-installed service, [csms] + [iso15118] (TLS), simulated -20 car",
    )
    parser.add_argument("--loop-s", type=float, default=0.5, help="time in the charge loop")
    parser.add_argument("--python", help="installed mode: use this interpreter, build no venv")
    parser.add_argument("--breakdown", action="store_true", help="installed mode: what RSS is")
    parser.add_argument("--no-tls", action="store_true", help="installed mode: iso15118.tls off")
    parser.add_argument("--profile-sessions", type=int, default=10, help="before tracing")
    parser.add_argument("--growth-sessions", type=int, default=20, help="traced growth")
    args = parser.parse_args()
    if args.python:
        args.python = os.path.abspath(args.python)  # not resolved: it may be a venv's
    if args.installed_v2g:
        sys.path.insert(0, str(ROOT / "bench"))
        return asyncio.run(main_installed(args))
    return asyncio.run(main_basic(args))


if __name__ == "__main__":
    sys.exit(main())
