"""The EXI codec and the message models stay sans-I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "chargepoint" / "iso15118"
FORBIDDEN = {"asyncio", "socket", "serial", "can", "ocpp"}
FILES = sorted([*ROOT.joinpath("exi").glob("*.py"), *ROOT.joinpath("messages").glob("*.py")])


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
