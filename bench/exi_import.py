#!/usr/bin/env python3
"""Import cost of the EXI codec and its message models (memory and time).

    python bench/exi_import.py [--runs 5]

Byte-compiles ``chargepoint`` first (``compileall``, bytecode writing enabled),
then starts a fresh interpreter per run that imports ``pydantic`` (which the
service loads anyway, for its configuration) and then ``chargepoint.iso15118.exi``
(codec + models). Prints the median RSS growth (VmRSS from /proc), the
tracemalloc total of the import and the import time. Target: the service stays
<= 60 MB RSS as a whole.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")
trace = sys.argv[2] == "1"
import pydantic  # noqa: F401 - loaded by the service anyway (config)
if trace:
    import tracemalloc
    tracemalloc.start()
r0 = rss_kb()
t0 = time.perf_counter()
import chargepoint.iso15118.exi  # noqa: F401
t1 = time.perf_counter()
r1 = rss_kb()
out = {"rss_kb": r1 - r0, "rss_total_kb": r1, "import_ms": (t1 - t0) * 1e3}
if trace:
    out["traced_kb"] = tracemalloc.get_traced_memory()[0] / 1024
print(json.dumps(out))
"""


def run(trace: bool) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT), "1" if trace else "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ns = ap.parse_args()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "chargepoint")], env=env, check=True
    )
    plain = [run(False) for _ in range(ns.runs)]
    traced = [run(True) for _ in range(max(1, ns.runs // 2))]
    rss = statistics.median(r["rss_kb"] for r in plain) / 1024
    total = statistics.median(r["rss_total_kb"] for r in plain) / 1024
    ms = statistics.median(r["import_ms"] for r in plain)
    tm = statistics.median(r["traced_kb"] for r in traced) / 1024
    print(f"import chargepoint.iso15118.exi after pydantic ({ns.runs} runs, .pyc cached)")
    print(f"  RSS growth     : {rss:6.1f} MB (process total {total:.1f} MB)")
    print(f"  tracemalloc    : {tm:6.1f} MB")
    print(f"  import time    : {ms:6.1f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
