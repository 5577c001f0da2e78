#!/usr/bin/env python3
"""EXI codec benchmark: decode DC_ChargeLoopReq + encode DC_ChargeLoopRes (BPT Dynamic).

    python bench/exi.py [--iterations 20000] [--java-iterations 300]

Prints the median time of the pair for ``chargepoint.iso15118.exi`` and, in the
same run, for the Java EXIficient codec of the ``iso15118`` package (through its
py4j bridge, run in the oracle venv: ``ISO15118_ORACLE_PYTHON``, default
``.oracle-venv/bin/python`` in the repository, as ``.ci/run`` and README make
it), with the ratio. The Java part is skipped
when that interpreter or ``java`` is missing. Target: <= 40 us for our pair.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import iso20 as m

DC_NS = "urn:iso:std:iso:15118:-20:DC"

JAVA_DRIVER = r"""
import json, sys, time, statistics
from iso15118.shared.exificient_exi_codec import ExificientEXICodec
cfg = json.loads(sys.argv[1])
codec = ExificientEXICodec()
req = bytes.fromhex(cfg["req_exi"])
res_json = json.dumps(cfg["res_json"])
ns = cfg["ns"]
for _ in range(20):
    codec.decode(req, ns); codec.encode(res_json, ns)
times = []
for _ in range(cfg["n"]):
    t0 = time.perf_counter()
    codec.decode(req, ns)
    codec.encode(res_json, ns)
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_us": statistics.median(times) * 1e6, "n": cfg["n"]}))
codec.gateway.shutdown()
"""


def rn(v: int, e: int = 0) -> m.RationalNumber:
    return m.RationalNumber(exponent=e, value=v)


def header() -> m.MessageHeader:
    return m.MessageHeader(session_id=bytes.fromhex("CCEC07A64440C546"), time_stamp=1761652391)


def messages() -> tuple[m.DC_ChargeLoopReq, m.DC_ChargeLoopRes]:
    hdr = header()
    req = m.DC_ChargeLoopReq(
        header=hdr,
        display_parameters=m.DisplayParameters(present_soc=55, target_soc=80),
        meter_info_requested=False,
        ev_present_voltage=rn(4000, -1),
        bpt_dynamic_dc_cl_req_control_mode=m.BPT_Dynamic_DC_CLReqControlMode(
            departure_time=7200,
            ev_target_energy_request=rn(40, 3),
            ev_maximum_energy_request=rn(6000, 1),
            ev_minimum_energy_request=rn(-20000),
            ev_maximum_charge_power=rn(300, 3),
            ev_minimum_charge_power=rn(100),
            ev_maximum_charge_current=rn(300),
            ev_maximum_voltage=rn(1000),
            ev_minimum_voltage=rn(10),
            ev_maximum_discharge_power=rn(-300, 3),
            ev_minimum_discharge_power=rn(-100),
            ev_maximum_discharge_current=rn(-300),
            ev_maximum_v2_x_energy_request=rn(5000),
            ev_minimum_v2_x_energy_request=rn(0),
        ),
    )
    return req, response(hdr)


def response(hdr: m.MessageHeader) -> m.DC_ChargeLoopRes:
    """What the charger builds per loop: the response and the 12 models inside it."""
    return m.DC_ChargeLoopRes(
        header=hdr,
        response_code=m.ResponseCode.OK,
        evse_status=m.EVSEStatus(
            notification_max_delay=0, evse_notification=m.EvseNotification.Pause
        ),
        evse_present_current=rn(1234, -1),
        evse_present_voltage=rn(4000, -1),
        evse_power_limit_achieved=False,
        evse_current_limit_achieved=False,
        evse_voltage_limit_achieved=False,
        bpt_dynamic_dc_cl_res_control_mode=m.BPT_Dynamic_DC_CLResControlMode(
            departure_time=7200,
            minimum_soc=20,
            target_soc=80,
            evse_maximum_charge_power=rn(150, 3),
            evse_minimum_charge_power=rn(0),
            evse_maximum_charge_current=rn(300),
            evse_maximum_voltage=rn(1000),
            evse_maximum_discharge_power=rn(-150, 3),
            evse_minimum_discharge_power=rn(0),
            evse_maximum_discharge_current=rn(-300),
            evse_minimum_voltage=rn(200),
        ),
    )


def bench_ours(req_exi: bytes, res: m.DC_ChargeLoopRes, n: int) -> tuple[float, float, float]:
    decode, encode, dc = exi.decode, exi.encode, exi.DC
    perf = time.perf_counter
    for _ in range(1000):
        decode(req_exi, dc)
        encode(res)
    pair, dec, enc = [], [], []
    for _ in range(n):
        t0 = perf()
        decode(req_exi, dc)
        t1 = perf()
        encode(res)
        t2 = perf()
        pair.append(t2 - t0)
        dec.append(t1 - t0)
        enc.append(t2 - t1)
    us = 1e6
    return (statistics.median(pair) * us, statistics.median(dec) * us, statistics.median(enc) * us)


def bench_build(n: int) -> tuple[float, float]:
    """Median of building the response alone and of building + encoding it, in us."""
    encode, perf, hdr = exi.encode, time.perf_counter, header()
    build, both = [], []
    for _ in range(n):
        t0 = perf()
        res = response(hdr)
        t1 = perf()
        encode(res)
        t2 = perf()
        build.append(t1 - t0)
        both.append(t2 - t0)
    return statistics.median(build) * 1e6, statistics.median(both) * 1e6


def java_json(res: m.DC_ChargeLoopRes) -> object:
    """to_json() in the Java codec's conventions (upper-case hexBinary)."""
    doc = exi.to_json(res)
    hdr = doc["DC_ChargeLoopRes"]["Header"]
    hdr["SessionID"] = hdr["SessionID"].upper()
    return doc


def bench_java(req_exi: bytes, res: m.DC_ChargeLoopRes, n: int) -> dict[str, float] | str:
    default = Path(__file__).resolve().parent.parent / ".oracle-venv" / "bin" / "python"
    py = Path(os.environ.get("ISO15118_ORACLE_PYTHON", str(default)))
    if not py.exists() or shutil.which("java") is None:
        return "skipped (oracle python or java missing)"
    cfg = {"req_exi": req_exi.hex(), "res_json": java_json(res), "ns": DC_NS, "n": n}
    proc = subprocess.run(
        [str(py), "-c", JAVA_DRIVER, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        return f"failed: {proc.stderr.strip()[-500:]}"
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--java-iterations", type=int, default=300)
    ns = ap.parse_args()
    req, res = messages()
    req_exi = exi.encode(req)
    assert exi.decode(req_exi, exi.DC) == req
    gc.collect()
    pair, dec, enc = bench_ours(req_exi, res, ns.iterations)
    print(
        f"chargepoint.iso15118.exi  ({ns.iterations} iterations, CPython {sys.version.split()[0]})"
    )
    print(f"  decode DC_ChargeLoopReq (BPT Dynamic, {len(req_exi)} bytes): {dec:8.1f} us median")
    print(
        f"  encode DC_ChargeLoopRes (BPT Dynamic, {len(exi.encode(res))} bytes): "
        f"{enc:8.1f} us median"
    )
    print(f"  pair                                       : {pair:8.1f} us median (target <= 40 us)")
    build, both = bench_build(ns.iterations)
    print(f"  build DC_ChargeLoopRes (13 models)         : {build:8.1f} us median")
    print(f"  build + encode DC_ChargeLoopRes            : {both:8.1f} us median")
    java = bench_java(req_exi, res, ns.java_iterations)
    if isinstance(java, str):
        print(f"iso15118 Java EXIficient codec (py4j): {java}")
    else:
        print(f"iso15118 Java EXIficient codec via py4j ({int(java['n'])} iterations)")
        print(f"  pair                                       : {java['median_us']:8.1f} us median")
        print(f"  ratio Java / ours: {java['median_us'] / pair:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
