"""Configuration loading: shipped files, error reporting, secrets, cross-field rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepoint import __version__
from chargepoint.config import (
    CanPowerStageConfig,
    Config,
    ModbusIsolationMonitorConfig,
    ModbusMeterConfig,
    PacketPlcConfig,
    Secret,
    SerialPilotBoardConfig,
    SimPilotBoardConfig,
    SimPowerStageConfig,
    format_problems,
    load_config,
    parse_config,
)
from chargepoint.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

STATION = """
[station]
id = "CP1"
vendor = "Vendor"
model = "Model"
"""


def ac_evse(evse_id: int = 1, extra: str = "", connector_ids: tuple[int, ...] = (1,)) -> str:
    text = f"""
[[evse]]
id = {evse_id}
kind = "ac"
phases = 3
nominal_voltage_v = 230
max_current_a = 16
pilot_board = {{ backend = "sim" }}
{extra}
"""
    for connector_id in connector_ids:
        text += f"""
[[evse.connector]]
id = {connector_id}
type = "sType2"
tethered = false
"""
    return text


def dc_evse(evse_id: int = 1, extra: str = "") -> str:
    return f"""
[[evse]]
id = {evse_id}
kind = "dc"
nominal_voltage_v = 800
max_current_a = 200
pilot_board = {{ backend = "sim" }}
{extra}

[[evse.connector]]
id = 1
type = "cCCS2"
tethered = true
"""


DC_HARDWARE = """
power_stage = { backend = "sim" }
isolation_monitor = { backend = "sim" }
"""

MINIMAL = STATION + ac_evse()


def problems_of(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml")
    assert info.value.source == "test.toml"
    return dict(info.value.problems)


# --------------------------------------------------------------------------- shipped files


def test_sim_toml_loads() -> None:
    config = load_config(CONFIG_DIR / "sim.toml")
    assert config.source.endswith("sim.toml")
    (evse,) = config.evse
    assert (evse.kind, evse.phases, evse.nominal_voltage_v, evse.max_current_a) == (
        "ac",
        3,
        230.0,
        32.0,
    )
    assert evse.autostart
    (connector,) = evse.connectors
    assert connector.type == "sType2"
    assert not connector.tethered
    assert isinstance(evse.pilot_board, SimPilotBoardConfig)
    assert config.sim is not None
    assert config.sim.battery_capacity_wh == 60_000
    assert config.sim.initial_soc_pct == 40
    assert config.sim.onboard_charger_max_current_a == 16
    assert str(config.runtime.control_socket).startswith("/tmp/")
    assert str(config.runtime.state_dir).startswith("/tmp/")
    assert config.runtime.log_level == "INFO"
    assert config.csms is None
    assert config.station.firmware_version == __version__
    assert config.warnings() == []


def _uncomment_block(text: str, first: str, last: str) -> str:
    """Uncomment the lines from the one containing ``first`` to ``last``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == first)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == last)
    for i in range(start, end + 1):
        lines[i] = re.sub(r"^(\s*)# ?", r"\1", lines[i])
    return "\n".join(lines)


def test_sim_toml_commented_examples_are_valid() -> None:
    """The commented DC EVSE and [csms] blocks must work once uncommented."""
    text = (CONFIG_DIR / "sim.toml").read_text(encoding="utf-8")
    text = _uncomment_block(text, "# [[evse]]", "#   tethered = true")
    text = _uncomment_block(text, "# [csms]", "# ping_interval_s = 30.0")
    config = parse_config(text, "sim.toml (uncommented)")
    assert [evse.kind for evse in config.evse] == ["ac", "dc"]
    assert isinstance(config.evse[1].power_stage, SimPowerStageConfig)
    assert config.evse[1].power_stage.bidirectional
    assert config.csms is not None
    assert config.csms.security_profile == 1


def test_pi_example_loads() -> None:
    config = load_config(CONFIG_DIR / "pi.example.toml")
    (evse,) = config.evse
    assert isinstance(evse.pilot_board, SerialPilotBoardConfig)
    assert evse.pilot_board.port == "/dev/ttyAMA0"
    assert isinstance(evse.power_stage, CanPowerStageConfig)
    assert (evse.power_stage.interface, evse.power_stage.channel) == ("socketcan", "can0")
    assert evse.power_stage.node_id == 1
    assert config.csms is not None
    assert config.csms.security_profile == 2
    assert config.csms.password is not None
    assert config.csms.password.file is not None
    assert config.csms.password.file.parent == Path("/etc/chargepoint")
    assert config.runtime.control_socket.parent == Path("/run/chargepoint")
    assert config.runtime.state_dir == Path("/var/lib/chargepoint")
    # Real safety sensors next to the real power hardware (no simulated IMD or meter).
    assert isinstance(evse.isolation_monitor, ModbusIsolationMonitorConfig)
    assert (evse.isolation_monitor.port, evse.isolation_monitor.unit_id) == ("/dev/ttyUSB0", 3)
    assert isinstance(evse.meter, ModbusMeterConfig) and evse.meter.model == "sdm630"
    assert isinstance(evse.plc, PacketPlcConfig) and evse.plc.interface == "eth1"
    assert config.warnings() == []


def test_pi_example_every_key_is_explained() -> None:
    """Each active key line has a comment right above it or on the same line."""
    lines = (CONFIG_DIR / "pi.example.toml").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            above = lines[number - 1].lstrip()
            assert above.startswith("#") or "#" in line, f"line {number + 1}: {line}"


# --------------------------------------------------------------------------- error reporting


def test_three_mistakes_in_three_sections_are_all_reported() -> None:
    text = (
        STATION.replace('model = "Model"', 'model = "Model"\nvendorr = "typo"')
        + ac_evse().replace("max_current_a = 16", 'max_current_a = "16"')
        + "\n[safety]\nover_temperature_c = 500\n"
    )
    problems = problems_of(text)
    assert set(problems) == {
        "station.vendorr",
        "evse[0].max_current_a",
        "safety.over_temperature_c",
    }
    assert "unknown key" in problems["station.vendorr"]
    assert "vendor" in problems["station.vendorr"]  # lists the allowed keys
    assert "'16'" in problems["evse[0].max_current_a"]  # shows the offending value
    assert "500" in problems["safety.over_temperature_c"]


def test_format_problems_lists_every_path() -> None:
    text = STATION.replace('id = "CP1"', 'id = "CP:1"') + ac_evse(extra="autostart = 1")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.toml")
    rendered = format_problems(info.value)
    assert rendered.startswith("bad.toml: 2 problems")
    assert "station.id" in rendered
    assert "evse[0].autostart" in rendered


def test_toml_syntax_error_reports_line_and_column() -> None:
    text = MINIMAL + "\n[runtime]\nlog_level = INFO\n"
    line = text.splitlines().index("log_level = INFO") + 1
    problems = problems_of(text)
    (where,) = problems
    assert where.startswith(f"line {line}, column ")
    assert "TOML syntax error" in problems[where]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.source == str(missing)
    assert "cannot read" in info.value.problems[0][1]


def test_discriminator_tag_is_not_part_of_the_path() -> None:
    text = STATION + ac_evse().replace(
        'pilot_board = { backend = "sim" }', 'pilot_board = { backend = "serial", port = "ttyS0" }'
    )
    assert list(problems_of(text)) == ["evse[0].pilot_board.port"]


def test_unknown_backend_points_at_backend_key() -> None:
    text = STATION + ac_evse().replace('backend = "sim"', 'backend = "usb"')
    problems = problems_of(text)
    assert list(problems) == ["evse[0].pilot_board.backend"]
    assert "'serial'" in problems["evse[0].pilot_board.backend"]


def test_sim_section_is_a_key_not_a_tag() -> None:
    """``[sim]`` shares its name with the "sim" backend tag; it must stay in the path."""
    assert list(problems_of(MINIMAL + "\n[sim]\nphases = 2\n")) == ["sim.phases"]


def test_numbers_and_booleans_are_strict() -> None:
    problems = problems_of(STATION + ac_evse(extra="autostart = 1\nventilation = 'no'"))
    assert set(problems) == {"evse[0].autostart", "evse[0].ventilation"}


def test_relative_paths_are_rejected() -> None:
    problems = problems_of(MINIMAL + '\n[runtime]\nstate_dir = "var/lib"\n')
    assert "absolute" in problems["runtime.state_dir"]


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(pydantic.ValidationError):
        config.station.id = "other"


# --------------------------------------------------------------------------- cross-field rules


def test_duplicate_evse_ids() -> None:
    problems = problems_of(STATION + ac_evse(1) + ac_evse(1))
    assert list(problems) == ["evse[1].id"]
    assert "duplicate" in problems["evse[1].id"]


def test_duplicate_connector_ids() -> None:
    problems = problems_of(STATION + ac_evse(connector_ids=(1, 1)))
    assert list(problems) == ["evse[0].connector[1].id"]


def test_dc_without_power_stage_or_isolation_monitor() -> None:
    problems = problems_of(STATION + dc_evse())
    assert set(problems) == {"evse[0].power_stage", "evse[0].isolation_monitor"}
    assert "kind = 'dc'" in problems["evse[0].power_stage"]


def test_dc_with_hardware_is_valid() -> None:
    config = parse_config(STATION + dc_evse(extra=DC_HARDWARE))
    assert config.evse[0].phases is None


def test_ac_rules() -> None:
    text = STATION + ac_evse(extra=DC_HARDWARE).replace("phases = 3\n", "")
    assert set(problems_of(text)) == {
        "evse[0].phases",
        "evse[0].power_stage",
        "evse[0].isolation_monitor",
    }


@pytest.mark.parametrize(("current", "ok"), [(5.9, False), (6, True), (80, True), (81, False)])
def test_ac_current_range(current: float, ok: bool) -> None:
    text = STATION + ac_evse().replace("max_current_a = 16", f"max_current_a = {current}")
    if ok:
        assert parse_config(text).evse[0].max_current_a == current
    else:
        assert "IEC 61851-1" in problems_of(text)["evse[0].max_current_a"]


def test_connector_type_must_match_tethered() -> None:
    text = STATION + ac_evse().replace('type = "sType2"', 'type = "cType2"')
    assert list(problems_of(text)) == ["evse[0].connector[0].tethered"]


def test_isolation_warning_must_exceed_fault() -> None:
    text = MINIMAL + "\n[safety]\nisolation_fault_ohm = 600000\n"
    assert list(problems_of(text)) == ["safety.isolation_warning_ohm"]


def test_unidirectional_sim_power_stage_has_no_import() -> None:
    stage = 'power_stage = { backend = "sim", bidirectional = false }\n'
    text = STATION + dc_evse(extra=stage + 'isolation_monitor = { backend = "sim" }')
    assert set(problems_of(text)) == {
        "evse[0].power_stage.max_import_current_a",
        "evse[0].power_stage.max_import_power_w",
    }


@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P"]), max_size=60))
def test_station_id_rule(identity: str) -> None:
    text = MINIMAL.replace('id = "CP1"', f"id = {json.dumps(identity)}")
    valid = 1 <= len(identity) <= 48 and ":" not in identity
    try:
        config = parse_config(text)
    except ConfigError as err:
        assert not valid
        assert [path for path, _ in err.problems] == ["station.id"]
    else:
        assert valid
        assert config.station.id == identity


# --------------------------------------------------------------------------- CSMS and secrets


def csms(body: str) -> str:
    return MINIMAL + "\n[csms]\n" + body


PROFILE_2 = 'url = "wss://csms.example/ocpp"\nsecurity_profile = 2\n'


def test_secret_from_file_strips_one_trailing_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("s3cret-password\n\n", encoding="utf-8")
    config = parse_config(csms(PROFILE_2 + f'password = {{ file = "{secret_file}" }}'))
    assert config.csms is not None
    assert config.csms.password is not None
    assert config.csms.password.resolve() == "s3cret-password\n"
    assert config.warnings() == []


def test_secret_from_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    config = parse_config(csms(PROFILE_2 + f'password = {{ file = "{missing}" }}'), "x.toml")
    assert config.csms is not None
    assert config.csms.password is not None
    with pytest.raises(ConfigError) as info:
        config.csms.password.resolve()
    assert info.value.source == "x.toml"
    assert info.value.problems[0][0] == "csms.password"


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(csms(PROFILE_2 + 'password = { env = "CP_TEST_PASSWORD" }'))
    assert config.csms is not None
    secret = config.csms.password
    assert secret is not None
    monkeypatch.setenv("CP_TEST_PASSWORD", "from-the-environment")
    assert secret.resolve() == "from-the-environment"
    assert secret.resolve({"CP_TEST_PASSWORD": "explicit"}) == "explicit"


def test_missing_env_var_names_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CP_TEST_PASSWORD", raising=False)
    config = parse_config(csms(PROFILE_2 + 'password = { env = "CP_TEST_PASSWORD" }'), "y.toml")
    assert config.csms is not None
    assert config.csms.password is not None
    with pytest.raises(ConfigError) as info:
        config.csms.password.resolve()
    assert info.value.problems == [
        ("csms.password", "environment variable CP_TEST_PASSWORD is not set")
    ]
    assert "y.toml" in str(info.value)


def test_inline_secret_works_but_is_flagged_and_hidden() -> None:
    config = parse_config(csms(PROFILE_2 + 'password = { value = "hunter2-hunter2" }'))
    assert config.csms is not None
    assert config.csms.password is not None
    assert config.csms.password.resolve() == "hunter2-hunter2"
    assert [w.split(":")[0] for w in config.warnings()] == ["csms.password"]
    for rendering in (repr(config), str(config), repr(config.csms.password), str(config.csms)):
        assert "hunter2" not in rendering
    assert "hunter2" not in config.model_dump_json()


def test_secret_values_never_appear_in_errors() -> None:
    for password in (
        '{ value = "hunter2-hunter2", env = "X" }',
        "{ value = 123456789 }",
        '"hunter2-hunter2"',
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(csms(PROFILE_2 + f"password = {password}"))
        rendered = format_problems(info.value)
        assert "csms.password" in rendered
        assert "hunter2" not in rendered
        assert "123456789" not in rendered


def test_secret_needs_exactly_one_source() -> None:
    assert "exactly one" in problems_of(csms(PROFILE_2 + "password = {}"))["csms.password"]


def test_profile_needs_password_and_tls() -> None:
    text = csms('url = "ws://csms.example/ocpp"\nsecurity_profile = 2\n')
    assert set(problems_of(text)) == {"csms.url", "csms.password"}


def test_profile_3_needs_client_certificate() -> None:
    text = csms('url = "wss://csms.example/ocpp"\nsecurity_profile = 3\n')
    assert set(problems_of(text)) == {"csms.client_cert_file", "csms.client_key"}


def test_client_key_accepts_a_plain_path() -> None:
    text = csms(
        'url = "wss://csms.example/ocpp"\nsecurity_profile = 3\n'
        'client_cert_file = "/etc/chargepoint/cert.pem"\n'
        'client_key = "/etc/chargepoint/key.pem"\n'
    )
    config = parse_config(text)
    assert config.csms is not None
    assert config.csms.client_key == Secret(file=Path("/etc/chargepoint/key.pem"))
    assert config.csms.subprotocols == ("ocpp2.1", "ocpp2.0.1")


def test_csms_url_must_be_websocket() -> None:
    problems = problems_of(csms('url = "https://csms.example"\nsecurity_profile = 2\n'))
    assert "ws://" in problems["csms.url"]


def test_config_can_be_built_in_code() -> None:
    """Tests elsewhere construct configs directly; cross-field rules still apply."""
    with pytest.raises(pydantic.ValidationError):
        Config.model_validate(
            {
                "station": {"id": "CP1", "vendor": "V", "model": "M"},
                "evse": [
                    {
                        "id": 1,
                        "kind": "dc",
                        "nominal_voltage_v": 800,
                        "max_current_a": 100,
                        "pilot_board": {"backend": "sim"},
                        "connector": [{"id": 1, "type": "cCCS2", "tethered": True}],
                    }
                ],
            }
        )


def test_questionable_but_legal_settings_are_warnings() -> None:
    text = STATION + ac_evse(2).replace('type = "sType2"', 'type = "sFuture9"')
    config = parse_config(text + "\n[sim]\n")
    assert config.warnings() == [
        "evse: OCPP expects EVSE ids numbered 1..N without gaps",
        "evse[0].connector[0].type: 'sFuture9' is not a known OCPP connector type",
    ]


# --------------------------------------------------------------------------- real vs simulated

REAL_AC = STATION + ac_evse().replace(
    'pilot_board = { backend = "sim" }',
    'pilot_board = { backend = "serial", port = "/dev/ttyAMA0" }',
)


SIM_METER = 'meter = { backend = "sim" }\n\n[[evse.connector]]'


def test_real_power_hardware_with_a_simulated_meter_is_refused() -> None:
    text = REAL_AC.replace("[[evse.connector]]", SIM_METER)
    problems = problems_of(text)
    assert list(problems) == ["evse[0].meter"]
    assert "refused" in problems["evse[0].meter"] and "lab_bench" in problems["evse[0].meter"]


def test_a_lab_bench_may_mix_them_and_is_warned() -> None:
    text = REAL_AC.replace("[[evse.connector]]", SIM_METER)
    config = parse_config(text + "\n[runtime]\nlab_bench = true\n")
    assert [w.split(":")[0] for w in config.warnings()] == ["evse[0].meter"]


def test_modbus_devices_are_validated() -> None:
    meter = 'meter = { backend = "modbus", port = "/dev/ttyUSB1", parity = "X", unit_id = 0 }'
    text = REAL_AC.replace("[[evse.connector]]", f"{meter}\n\n[[evse.connector]]")
    assert set(problems_of(text)) == {"evse[0].meter.parity", "evse[0].meter.unit_id"}
    ok = REAL_AC.replace(
        "[[evse.connector]]",
        'meter = { backend = "modbus", port = "/dev/ttyUSB1" }\n\n[[evse.connector]]',
    )
    config = parse_config(ok)
    assert isinstance(config.evse[0].meter, ModbusMeterConfig)
    assert (config.evse[0].meter.baudrate, config.evse[0].meter.unit_id) == (9600, 1)


def test_imd_thresholds_must_be_ordered() -> None:
    text = (
        (CONFIG_DIR / "pi.example.toml")
        .read_text()
        .replace("prewarning_kohm = 500", "prewarning_kohm = 50")
    )
    assert list(problems_of(text)) == ["evse[0].isolation_monitor.prewarning_kohm"]


def test_a_simulated_modbus_meter_is_an_ac_meter() -> None:
    text = (
        (CONFIG_DIR / "sim-v2g.toml")
        .read_text()
        .replace('meter = { backend = "sim" }', 'meter = { backend = "sim", link = "modbus" }')
    )
    problems = problems_of(text)
    assert list(problems) == ["evse[0].meter"] and "AC meter" in problems["evse[0].meter"]


# ------------------------------------------------------------------- hostile files (issue 10)


def test_a_deeply_nested_file_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(STATION + "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [("<toml>", "nested too deeply")]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("max_current_a = 16", "max_current_a = 1e9"), "evse[0].max_current_a"),
        (
            ("tethered = false", "tethered = false\nmax_current_a = 1e12"),
            "evse[0].connector[0].max_current_a",
        ),
        (("id = 1\nkind", "id = 12345678901234567890123\nkind"), "evse[0].id"),
    ],
)
def test_absurd_physical_values_are_refused(edit: tuple[str, str], key: str) -> None:
    text = MINIMAL.replace(*edit)
    assert text != MINIMAL
    problems = problems_of(text)
    assert key in problems, problems


def test_absurd_dc_values_are_refused() -> None:
    text = (CONFIG_DIR / "sim-v2g.toml").read_text()
    for old, new, key in [
        ("max_power_w = 30_000.0", "max_power_w = 1e15", "evse[0].max_power_w"),
        ("max_current_a = 100.0", "max_current_a = 1e9", "evse[0].max_current_a"),
    ]:
        assert key in problems_of(text.replace(old, new, 1))
