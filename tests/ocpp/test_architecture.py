"""The OCPP core stays sans-I/O, and only the adapter touches the `ocpp` package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2] / "chargepoint"
FORBIDDEN_IN_CORE = {
    "asyncio",
    "socket",
    "ssl",
    "os",
    "cryptography",
    "sqlite3",
    "websockets",
    "ocpp",
    "time",
    "random",
    "uuid",
    "threading",
    "chargepoint.adapters",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_imports_no_io_and_reads_no_clock() -> None:
    paths = sorted((ROOT / "ocpp").rglob("*.py"))
    assert ROOT / "ocpp" / "blocks" / "__init__.py" in paths
    for path in paths:
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN_IN_CORE and not name.startswith("chargepoint.adapters"), (
                f"{path.name} imports {name}"
            )
        text = path.read_text()
        assert ".now(" not in text and "utcnow" not in text, path.name


def test_blocks_see_the_core_only_through_the_outbox() -> None:
    # The station core builds the blocks; a block never imports it back.
    for path in sorted((ROOT / "ocpp" / "blocks").rglob("*.py")):
        assert "chargepoint.ocpp.station" not in imported_modules(path), path.name


def test_only_the_client_adapter_imports_the_ocpp_package() -> None:
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "adapters" / "ocpp_client.py":
            continue
        assert not any(n == "ocpp" or n.startswith("ocpp.") for n in imported_modules(path)), (
            f"{path} imports the ocpp package"
        )
