"""Releases installed beside the running one, switched atomically, confirmed or rolled back.

Real ``python -m venv`` and ``pip install --no-index`` runs on tiny wheels written in
the test; nothing comes from a package index.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from chargepoint.adapters.release import ROLLED_BACK, main, run_process
from chargepoint.release import InstallError, Releases
from tests.release.wheels import make_bundle


def run_in(release: Path, code: str) -> str:
    done = subprocess.run(
        [str(release / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def releases(tmp_path: Path) -> Releases:
    return Releases(tmp_path / "opt", python=sys.executable)


def test_a_release_installs_beside_the_running_one_and_switches(
    releases: Releases, tmp_path: Path
) -> None:
    """Install 1.0, switch, confirm; install 2.0 beside it: 1.0 stays current until the
    switch, which replaces the link in one step; 2.0 is then pending confirmation."""
    manifest = releases.install(make_bundle(tmp_path, "fwdemo", "1.0"), run_process)
    assert manifest.version == "1.0" and releases.current_version() is None
    releases.switch("1.0", now=1000.0, confirm_within_s=60)
    assert os.readlink(releases.current) == "releases/1.0"
    assert run_in(releases.current, "import fwdemo; print(fwdemo.VALUE)") == "1.0"
    assert releases.confirm("1.0") and releases.pending() is None
    releases.install(make_bundle(tmp_path, "fwdemo", "2.0"), run_process)
    assert releases.current_version() == "1.0"  # installing does not switch
    pending = releases.switch("2.0", now=2000.0, confirm_within_s=60)
    assert pending.previous == "1.0" and pending.deadline == 2060.0
    assert run_in(releases.current, "import fwdemo; print(fwdemo.VALUE)") == "2.0"
    assert os.readlink(releases.previous) == "releases/1.0"
    assert not (releases.root / ".incoming").exists()
    assert not releases.confirm("1.0")  # only the pending release confirms itself


def test_a_release_that_never_reports_ready_is_rolled_back(
    releases: Releases, tmp_path: Path
) -> None:
    """2.0 is switched to but never confirmed: the check before its deadline leaves it,
    after the deadline points `current` back at 1.0."""
    releases.install(make_bundle(tmp_path, "fwdemo", "1.0"), run_process)
    releases.switch("1.0", now=0.0, confirm_within_s=60)
    releases.confirm("1.0")
    releases.install(make_bundle(tmp_path, "fwdemo", "2.0"), run_process)
    releases.switch("2.0", now=100.0, confirm_within_s=60)
    assert releases.check(150.0) is None and releases.current_version() == "2.0"
    outcome = releases.check(161.0)
    assert outcome is not None and not outcome.confirmed and outcome.version == "2.0"
    assert releases.current_version() == "1.0" and releases.pending() is None
    assert releases.outcome() == outcome
    assert run_in(releases.current, "import fwdemo; print(fwdemo.VALUE)") == "1.0"


def test_a_release_that_fails_to_install_leaves_the_running_one(
    releases: Releases, tmp_path: Path
) -> None:
    """The manifest says 3.0 but the bundle carries 2.0's wheel: pip fails, nothing of 3.0
    is left, `current` is untouched."""
    releases.install(make_bundle(tmp_path, "fwdemo", "1.0"), run_process)
    releases.switch("1.0", now=0.0, confirm_within_s=60)
    broken = make_bundle(tmp_path, "fwdemo", "3.0", wheel_version="2.0")
    with pytest.raises(InstallError) as failure:
        releases.install(broken, run_process)
    assert not failure.value.verification
    assert not (releases.releases / "3.0").exists()
    assert releases.current_version() == "1.0"


def test_a_bundle_with_a_path_outside_wheels_is_refused(releases: Releases, tmp_path: Path) -> None:
    """A member named ../x.whl never leaves the extraction directory: refused before any
    process runs (InstallVerificationFailed)."""
    bundle = tmp_path / "evil.tar"
    with tarfile.open(bundle, "w") as tar:
        for name, data in (("manifest.json", b'{"name": "x", "version": "1"}'), ("../x.whl", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    def no_process(argv: object) -> None:
        raise AssertionError("nothing may run for a bad bundle")

    with pytest.raises(InstallError) as failure:
        releases.install(bundle, no_process)
    assert failure.value.verification
    assert not (tmp_path / "x.whl").exists() and not (releases.root / "x.whl").exists()


def test_the_command_line_installs_checks_and_rolls_back(tmp_path: Path) -> None:
    """`install` switches with a deadline; `check` (systemd's ExecStartPre) rolls back a
    release past it and exits 3."""
    root = tmp_path / "opt"
    assert main(["install", str(make_bundle(tmp_path, "fwdemo", "1.0")), "--root", str(root)]) == 0
    assert main(["confirm", "1.0", "--root", str(root)]) == 0
    bundle = make_bundle(tmp_path, "fwdemo", "2.0")
    assert main(["install", str(bundle), "--root", str(root), "--confirm-within", "0"]) == 0
    assert main(["check", "--root", str(root)]) == ROLLED_BACK
    assert Releases(root, python=sys.executable).current_version() == "1.0"
    assert main(["check", "--root", str(root)]) == 0
