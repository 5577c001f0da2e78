"""Release bundles: build one from a directory of wheels, read one back safely.

A bundle comes from the network (UpdateFirmware), so reading it trusts nothing
but its signature, which is checked before: member names are plain file names
under ``wheels/`` (no absolute paths, no ``..``, no links), and the manifest's
name and version are checked against what a directory name and pip accept.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from chargepoint.errors import ChargepointError

MANIFEST = "manifest.json"
WHEELS = "wheels"
#: a version that is also a safe directory name (PEP 440 public versions fit)
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class BundleError(ChargepointError, ValueError):
    """The bundle is not a release bundle (the station reports InstallVerificationFailed)."""


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str


def build_bundle(wheels: Path, manifest: Manifest, out: Path) -> Path:
    """Write ``out`` (tar) with ``manifest.json`` and every ``*.whl`` of ``wheels``."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise BundleError(f"no wheels in {wheels}")
    data = json.dumps({"name": manifest.name, "version": manifest.version}).encode()
    with tarfile.open(out, "w") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for wheel in found:
            tar.add(wheel, arcname=f"{WHEELS}/{wheel.name}", recursive=False)
    return out


def _member_target(name: str, dest: Path) -> Path | None:
    """Where a member goes, or None for the manifest; refuses anything unusual."""
    path = PurePosixPath(name)
    if name == MANIFEST:
        return None
    if len(path.parts) != 2 or path.parts[0] != WHEELS or not path.name.endswith(".whl"):
        raise BundleError(f"unexpected member {name!r}")
    if path.name.startswith(".") or "\\" in path.name:
        raise BundleError(f"unexpected member {name!r}")
    return dest / path.name


def _manifest(data: bytes) -> Manifest:
    try:
        raw = json.loads(data)
        name, version = raw["name"], raw["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"unreadable manifest: {exc}") from exc
    if not isinstance(name, str) or not _NAME.match(name):
        raise BundleError(f"bad package name in manifest: {name!r}")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise BundleError(f"bad version in manifest: {version!r}")
    return Manifest(name, version)


def read_bundle(bundle: Path, dest: Path) -> Manifest:
    """Extract the wheels of ``bundle`` into ``dest`` (created); return its manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest: Manifest | None = None
    wheels = 0
    # tar first: a tar of wheels also ends in a zip's directory record
    if not tarfile.is_tarfile(bundle) and zipfile.is_zipfile(bundle):
        with zipfile.ZipFile(bundle) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                target = _member_target(info.filename, dest)
                if target is None:
                    manifest = _manifest(archive.read(info))
                else:
                    target.write_bytes(archive.read(info))
                    wheels += 1
    else:
        manifest, wheels = _read_tar(bundle, dest)
    if manifest is None:
        raise BundleError(f"no {MANIFEST} in the bundle")
    if wheels == 0:
        raise BundleError("no wheels in the bundle")
    return manifest


def _read_tar(bundle: Path, dest: Path) -> tuple[Manifest | None, int]:
    manifest: Manifest | None = None
    wheels = 0
    try:
        with tarfile.open(bundle) as tar:
            for member in tar.getmembers():
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BundleError(f"unexpected member {member.name!r} (not a file)")
                target = _member_target(member.name, dest)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                if target is None:
                    manifest = _manifest(source.read())
                else:
                    target.write_bytes(source.read())
                    wheels += 1
    except tarfile.TarError as exc:
        raise BundleError(f"neither tar nor zip: {exc}") from exc
    return manifest, wheels
