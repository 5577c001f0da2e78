"""The shipped systemd unit starts the release layout the firmware update switches."""

from __future__ import annotations

import shlex
from pathlib import Path

from chargepoint.adapters.release import main

UNIT = Path(__file__).parents[2] / "systemd" / "chargepoint.service"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_starts_current_after_the_rollback_check(tmp_path: Path) -> None:
    """ExecStart runs `current`; ExecStartPre (failure ignored: no `previous` before the
    first update) is a `check` the release tool accepts; /opt/chargepoint is writable;
    exit status 75 (the service's restart request) restarts it."""
    unit = settings()
    assert unit["ExecStart"][0].startswith("/opt/chargepoint/current/bin/chargepoint run ")
    [pre] = unit["ExecStartPre"]
    assert pre.startswith("-/opt/chargepoint/previous/bin/python -m chargepoint.adapters.release ")
    argv = shlex.split(pre)[3:]
    assert argv[:3] == ["check", "--root", "/opt/chargepoint"]
    assert main([*argv[:2], str(tmp_path)]) == 0  # nothing pending: nothing to roll back
    assert "/opt/chargepoint" in unit["ReadWritePaths"]
    assert "75" in unit["RestartForceExitStatus"][0].split()
