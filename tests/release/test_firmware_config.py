"""The [firmware] section needs a manufacturer root to trust (signed updates only)."""

from __future__ import annotations

import pytest

from chargepoint.config import parse_config
from chargepoint.errors import ConfigError
from tests.e2e.conftest import SIM_TOML

CSMS = (
    '\n[csms]\nurl = "ws://127.0.0.1:9/ocpp"\nsecurity_profile = 1\n'
    'password = { value = "correct-horse-battery" }\n'
)


def test_firmware_without_a_signing_root_is_refused() -> None:
    text = SIM_TOML.read_text() + CSMS + '\n[firmware]\nreleases_dir = "/opt/chargepoint"\n'
    with pytest.raises(ConfigError) as problem:
        parse_config(text, "test")
    assert any("firmware_signing_root" in message for _, message in problem.value.problems)


def test_firmware_with_a_signing_root_is_accepted() -> None:
    text = (
        SIM_TOML.read_text()
        + CSMS
        + 'firmware_signing_root = "/etc/chargepoint/fw-root.pem"\n'
        + '\n[firmware]\nreleases_dir = "/opt/chargepoint"\nconfirm_within_s = 120.0\n'
    )
    config = parse_config(text, "test")
    assert config.firmware is not None and config.firmware.confirm_within_s == 120.0
    assert config.csms is not None
    assert str(config.csms.firmware_signing_root) == "/etc/chargepoint/fw-root.pem"


def test_a_signing_crl_needs_the_signing_root() -> None:
    """[csms] firmware_signing_crl without firmware_signing_root: refused, with the key."""
    text = SIM_TOML.read_text() + CSMS + 'firmware_signing_crl = "/etc/chargepoint/fw.crl"\n'
    with pytest.raises(ConfigError) as problem:
        parse_config(text, "test")
    assert any("firmware_signing_crl" in str(key) for key, _ in problem.value.problems)


def test_a_signing_crl_beside_the_root_is_accepted() -> None:
    text = (
        SIM_TOML.read_text()
        + CSMS
        + 'firmware_signing_root = "/etc/chargepoint/fw-root.pem"\n'
        + 'firmware_signing_crl = "/etc/chargepoint/fw-signing.crl"\n'
    )
    config = parse_config(text, "test")
    assert config.csms is not None
    assert str(config.csms.firmware_signing_crl) == "/etc/chargepoint/fw-signing.crl"


def test_the_commented_firmware_example_of_pi_example_is_valid() -> None:
    """config/pi.example.toml with its firmware lines uncommented loads: the signing
    root and CRL under [csms], the [firmware] section."""
    lines = (SIM_TOML.parent / "pi.example.toml").read_text().splitlines()
    text = "\n".join(
        line.removeprefix("# ")
        if line.startswith(("# firmware_signing", "# [firmware]", "# releases_dir"))
        or line.startswith(
            ("# confirm_within_s", "# max_download_mb", '# ca_file = "/etc/chargepoint/firmware')
        )
        else line
        for line in lines
    )
    config = parse_config(text, "pi.example.toml")
    assert config.firmware is not None and config.csms is not None
    assert config.firmware.releases_dir.as_posix() == "/opt/chargepoint"
    assert config.csms.firmware_signing_crl is not None
