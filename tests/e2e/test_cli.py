"""The command line, as an installer or operator uses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.conftest import ROOT, SIM_TOML

CLI = [sys.executable, "-m", "chargepoint"]


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_check_config_accepts_shipped_files() -> None:
    for name in ("sim.toml", "sim-v2g.toml", "pi.example.toml"):
        result = run_cli("check-config", str(ROOT / "config" / name))
        assert result.returncode == 0, result.stderr


def test_check_config_names_every_mistake(tmp_path: Path) -> None:
    text = SIM_TOML.read_text()
    text = text.replace("max_current_a = 32.0", 'max_current_a = "lots"')
    text = text.replace('id = "SIM-CP-0001"', 'id = "SIM:CP"')
    text = text.replace('log_level = "INFO"', 'log_level = "CHATTY"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = run_cli("check-config", str(bad))
    assert result.returncode != 0
    for path in ("evse[0].max_current_a", "station.id", "runtime.log_level"):
        assert path in result.stderr, result.stderr
    run = run_cli("run", "--config", str(bad))
    assert run.returncode != 0 and "evse[0].max_current_a" in run.stderr


def test_run_sim_commands_and_orderly_sigterm(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    text = SIM_TOML.read_text().replace('"/tmp/chargepoint-sim.sock"', f'"{sock}"')
    config = tmp_path / "sim.toml"
    config.write_text(text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CLI, "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        plug = run_cli("sim", "plug", "--config", str(config))
        assert plug.returncode == 0, plug.stderr
        assert json.loads(plug.stdout)["status"]["ev"]["plugged"] is True
        deadline = time.monotonic() + 20
        while True:
            status = json.loads(run_cli("sim", "status", "--config", str(config)).stdout)
            if status["evse"][0]["state"] == "charging":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        bad = run_cli("sim", "fault", "meteor", "--config", str(config))
        assert bad.returncode == 1 and "unknown fault" in bad.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "stopping: power off, contactors open" in out
    assert not sock.exists()


def test_sim_without_service_says_so(tmp_path: Path) -> None:
    result = run_cli("sim", "plug", "--socket", str(tmp_path / "none.sock"))
    assert result.returncode == 2 and "cannot reach the service" in result.stderr


def test_diagram_is_rendered_from_the_table() -> None:
    result = run_cli("diagram")
    assert result.returncode == 0
    assert "READY -> CHARGING" in result.stdout and "STOPPING -> CONNECTED" in result.stdout
    secc = run_cli("diagram", "--secc")
    assert secc.returncode == 0
    assert 'PRE_CHARGE -> POWER_DELIVERY [label="pre_charged"]' in secc.stdout
    assert "CHARGE_LOOP -> WELDING" in secc.stdout


def test_exi_dissector_round_trip(tmp_path: Path) -> None:
    from chargepoint.iso15118 import exi  # noqa: PLC0415 - heavy import, only here

    message = exi.from_json(
        {
            "SessionSetupReq": {
                "Header": {"SessionID": "0000000000000000", "TimeStamp": 1700000000},
                "EVCCID": "WMIV1234567890ABCDEF",
            }
        },
        exi.COMMON,
    )
    hex_payload = exi.encode(message).hex()
    decoded = run_cli("exi", "decode", hex_payload, "--payload-type", "0x8002")
    assert decoded.returncode == 0, decoded.stderr
    doc = json.loads(decoded.stdout)
    assert doc["message"]["SessionSetupReq"]["EVCCID"] == "WMIV1234567890ABCDEF"
    source = tmp_path / "msg.json"
    source.write_text(decoded.stdout)
    encoded = run_cli("exi", "encode", str(source))
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout.strip() == hex_payload


def test_exi_decode_of_garbage_fails_clearly() -> None:
    result = run_cli("exi", "decode", "deadbeef")
    assert result.returncode == 1 and "EXI decode error" in result.stderr


def test_run_refuses_a_csms_section_it_cannot_use(tmp_path: Path) -> None:
    text = SIM_TOML.read_text() + (
        '\n[csms]\nurl = "wss://127.0.0.1:1/ocpp"\nsecurity_profile = 3\n'
        'client_cert_file = "/nonexistent/cert.pem"\nclient_key = { env = "NO_SUCH_KEY_VAR" }\n'
    )
    config = tmp_path / "bad-csms.toml"
    config.write_text(text)
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.returncode == 1
    assert "csms.client_key" in result.stderr


def _sim_config(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = SIM_TOML.read_text()
    text = text.replace('"/tmp/chargepoint-sim.sock"', f'"{tmp_path / "control.sock"}"')
    text = text.replace('"/tmp/chargepoint-sim"', f'"{tmp_path / "state"}"')
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def test_run_with_a_missing_serial_port_says_which_setting_in_one_line(tmp_path: Path) -> None:
    """Issue 10 item 3: one clear line naming the setting and the path, a distinct code."""
    config = _sim_config(
        tmp_path,
        ('pilot_board = { backend = "sim", link = "pty" }',
         'pilot_board = { backend = "serial", port = "/dev/ttyNOPE9" }'),
        ("[runtime]", "[runtime]\nlab_bench = true"),
    )  # fmt: skip
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.returncode == 69, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "evse 1 pilot_board" in errors[0] and "/dev/ttyNOPE9" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_run_with_a_state_dir_it_cannot_create_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = _sim_config(tmp_path, (f'"{tmp_path / "state"}"', f'"{blocker / "state"}"'))
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.returncode == 73, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert str(blocker / "state") in result.stderr


def test_demo_runs_a_v2g_session_and_checks_both_registers() -> None:
    """README's first command: the ISO 15118-20 DC_BPT demo over TLS ends with its checks."""
    result = run_cli("demo", "--seconds", "3", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "DC_BPT dynamic over TLS 1.3" in out
    assert "energy back from the car" in out
    assert "OK: delivered and returned energy match the meter's import and export registers" in out


def test_basic_demo_still_runs() -> None:
    result = run_cli("demo", "--basic", "--seconds", "2", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: summary matches the meter's import register" in result.stdout
