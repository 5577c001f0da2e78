"""The core is sans-I/O: it imports no I/O library and never reads the clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "chargepoint"
# The asyncio shells, the composition root (app.py, backends.py, cli.py) and the demos
# above it do the I/O.
IO_MODULES = {"adapters", "demo", "app.py", "backends.py", "cli.py", "__main__.py"}
FORBIDDEN = {
    "asyncio", "socket", "selectors", "ssl", "serial", "can", "ocpp", "websockets",
    "sqlite3", "threading", "subprocess", "time",
}  # fmt: skip
# The standard library itself (logging, importlib.metadata) loads threading and
# socket; what must not come in even indirectly are the I/O frameworks.
TRANSITIVE = {"asyncio", "serial", "can", "ocpp", "websockets", "sqlite3", "ssl"}
CLOCK_CALLS = {"now", "utcnow", "today", "monotonic", "time", "perf_counter"}


def core_modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in IO_MODULES
    )


def test_core_sources_import_no_io_and_read_no_clock() -> None:
    offenders: list[str] = []
    for path in core_modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_CALLS
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} reads the clock")
    assert not offenders, "\n".join(offenders)


def test_importing_the_whole_core_pulls_in_no_io_module() -> None:
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in core_modules()
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in {sorted(TRANSITIVE)!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
