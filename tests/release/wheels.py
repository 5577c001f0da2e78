"""Tiny wheels and release bundles made in the test, offline (no build tools)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from chargepoint.release import Manifest, build_bundle


def make_wheel(directory: Path, name: str, version: str, body: str = "VALUE = 1\n") -> Path:
    """A pure-Python wheel holding the package ``name`` (one ``__init__.py``)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", record)
    return wheel


def make_bundle(
    tmp: Path, name: str, version: str, *, wheel_version: str | None = None, body: str = ""
) -> Path:
    """A release bundle for ``name`` ``version``; ``wheel_version`` other than ``version``
    makes a bundle whose install fails (pip finds no matching wheel)."""
    wheels = tmp / f"wheels-{version}"
    make_wheel(wheels, name, wheel_version or version, body or f"VALUE = {version!r}\n")
    return build_bundle(wheels, Manifest(name, version), tmp / f"{name}-{version}.tar")
