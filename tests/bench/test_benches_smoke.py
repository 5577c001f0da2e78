"""The benchmarks of bench/ still run end to end (minimal sizes; their figures are not judged).

Each runs as a subprocess, the way it is run by hand. The iso15118-package
comparison of bench/secc_loop.py runs only where the oracle venv works.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.iso15118.interop.harness import skip_reason

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str, timeout_s: float = 240.0) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert proc.returncode == 0, f"{script} {args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_secc_loop_over_tls_without_the_package() -> None:
    out = run_bench("secc_loop.py", "--loops", "30", "--tls", "--no-theirs")
    assert "ours   service time (30):" in out
    assert "ours   EV round trip (30):" in out
    assert "TLS 1.3" in out
    assert "theirs: skipped (--no-theirs)" in out
    assert "TransactionEvent(Updated)" in out  # OCPP meter values flowed meanwhile


@pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))
def test_secc_loop_next_to_the_iso15118_package() -> None:
    out = run_bench("secc_loop.py", "--loops", "20", "--theirs-loops", "3", "--warmup-loops", "1")
    assert "theirs EV round trip (3):" in out
    assert "ratio theirs/ours, EV round trip:" in out


def test_memory_basic_mode() -> None:
    out = run_bench("memory.py", "--sessions", "1", "--charge-s", "0.1")
    assert "after session   1: RSS" in out
    assert "growth 1 -> 1" in out


def test_memory_v2g_with_breakdown_on_the_dev_interpreter() -> None:
    out = run_bench(
        "memory.py",
        "--installed-v2g",
        "--python",
        sys.executable,
        "--sessions",
        "1",
        "--loop-s",
        "0.1",
        "--breakdown",
        "--profile-sessions",
        "1",
        "--growth-sessions",
        "1",
    )
    assert "after session   1: RSS" in out
    assert "growth 1 -> 1" in out
    assert "idle after start-up, with [csms], with [iso15118]" in out
    assert "traced Python memory; by package (MB)" in out


def test_memory_v2g_installs_the_service_into_a_fresh_venv() -> None:
    out = run_bench("memory.py", "--installed-v2g", "--sessions", "1", "--loop-s", "0.1")
    assert "(pip install, not editable, byte-compiled)" in out
    assert "after session   1: RSS" in out


def test_startup() -> None:
    out = run_bench("startup.py", "--runs", "1")
    assert "process start -> V2G server accepting TCP:   median" in out
    assert "process start -> BootNotification received: median" in out


def test_safety_latency_with_a_slow_dc_power_stage() -> None:
    out = run_bench("safety_latency.py", "--slow-stage", "--events", "1")
    assert "slow power stage: 1 DC sessions ended by the EV under load" in out
    assert "safety reaction (STATUS C->B -> module sees Off): p50" in out
    assert "longest host silence on the board's wire:" in out


def test_composite_schedule() -> None:
    out = run_bench("composite_schedule.py", "--runs", "3")
    assert "median" in out
