"""The committed models and codec are what tools/gen_exi.py makes of the official XSDs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.iso15118.exi_support import ORACLE_PYTHON, REPO


def _schema_dir() -> Path | None:
    if not ORACLE_PYTHON.exists():
        return None
    out = subprocess.run(
        [
            str(ORACLE_PYTHON),
            "-c",
            "import importlib.util, pathlib; s = importlib.util.find_spec('iso15118'); "
            "print(pathlib.Path(next(iter(s.submodule_search_locations))) / 'shared' / 'schemas')",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    path = Path(out.stdout.strip()) if out.returncode == 0 else None
    return path if path is not None and (path / "iso15118_20").is_dir() else None


def test_generated_files_are_up_to_date() -> None:
    schemas = _schema_dir()
    if schemas is None:
        pytest.skip("iso15118 package (official XSDs) not available")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_exi.py"), str(schemas), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_generator_refuses_schemas_other_than_the_pinned_ones(tmp_path: Path) -> None:
    schemas = _schema_dir()
    if schemas is None:
        pytest.skip("iso15118 package (official XSDs) not available")
    copy = tmp_path / "schemas"
    shutil.copytree(schemas, copy)
    dc = copy / "iso15118_20" / "V2G_CI_DC.xsd"
    dc.write_text(dc.read_text() + "\n<!-- changed -->\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_exi.py"), str(copy), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "iso15118_20/V2G_CI_DC.xsd: sha256" in proc.stdout
