"""The OCA JSON schemas shipped with the ``ocpp`` package, for tests of the sans-I/O
core that build or check OCPP payloads (skips cleanly where they are missing)."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from chargepoint.ocpp.rpc import ProtocolVersion


def schema_path(version: ProtocolVersion, name: str) -> Path:
    """The schema file ``name`` of ``version`` (skips the test where it is missing)."""
    spec = importlib.util.find_spec("ocpp")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ocpp package (schemas) not installed")
    folder = "v201" if version is ProtocolVersion.V201 else "v21"
    path = Path(next(iter(spec.submodule_search_locations))) / folder / "schemas" / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path


@cache
def _validator(version: ProtocolVersion, name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    path = schema_path(version, name)
    return jsonschema.Draft6Validator(json.loads(path.read_text(encoding="utf-8")))


def assert_schema_valid(version: ProtocolVersion, name: str, payload: dict[str, Any]) -> None:
    """``payload`` is valid against the schema file ``name`` (e.g. a ...Request.json)."""
    errors = schema_errors(version, name, payload)
    assert not errors, f"{name} ({version.value}) invalid: {errors[:3]}"


def schema_errors(version: ProtocolVersion, name: str, payload: dict[str, Any]) -> list[str]:
    """What the schema file ``name`` finds wrong with ``payload`` (empty: valid)."""
    return [e.message for e in _validator(version, name).iter_errors(payload)]
