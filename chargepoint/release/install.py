"""Install a release beside the running one, switch atomically, confirm or roll back.

Theory of operation:

1. :meth:`Releases.install` extracts the bundle's wheels and builds
   ``releases/<version>`` with ``python -m venv`` and ``pip install --no-index
   --find-links`` (no package index).  The running release is not touched; a
   failure removes the half-built directory.
2. :meth:`Releases.switch` records ``pending.json`` (the new version, the one it
   replaces, the confirmation deadline) and then replaces the ``current`` link
   with ``os.replace`` of a fresh link: at every instant ``current`` names a
   complete release.
3. The new release, once READY, calls :meth:`Releases.confirm` with its version:
   ``pending.json`` goes, ``outcome.json`` says confirmed.
4. :meth:`Releases.check` (before every start of the service, and whenever the
   operator likes) rolls back a release that was not confirmed by its deadline:
   ``current`` points at the previous release again.

The processes run through ``run`` and the time is an argument (wall-clock epoch
seconds, since it must survive a reboot), so this module does no hidden I/O
beyond the files under ``root``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from chargepoint.errors import ChargepointError
from chargepoint.release.bundle import BundleError, Manifest, read_bundle


class InstallError(ChargepointError):
    """Installing the release failed; the running release is unchanged.

    ``verification``: the bundle itself is unusable (OCPP InstallVerificationFailed),
    rather than a step of the install (InstallationFailed)."""

    def __init__(self, message: str, *, verification: bool = False) -> None:
        super().__init__(message)
        self.verification = verification


class Runner(Protocol):
    """Run a command to completion; raise :class:`InstallError` if it fails."""

    def __call__(self, argv: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class Pending:
    """A switched release waiting for its confirmation."""

    version: str
    previous: str | None
    deadline: float


@dataclass(frozen=True)
class Outcome:
    """What became of the last switch."""

    version: str
    confirmed: bool
    reason: str = ""


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` so that a power cut leaves the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class Releases:
    """The releases under ``root`` (see :mod:`chargepoint.release`)."""

    def __init__(self, root: Path, *, python: str) -> None:
        self.root = root
        #: the interpreter new virtual environments are made from
        self.python = python
        self.releases = root / "releases"
        self.current = root / "current"
        self.previous = root / "previous"
        self._pending = root / "pending.json"
        self._outcome = root / "outcome.json"

    # ---------------------------------------------------------------- reading
    def current_version(self) -> str | None:
        """The release ``current`` points at (None: no release installed this way)."""
        return self._link_version(self.current)

    def _link_version(self, link: Path) -> str | None:
        try:
            return Path(os.readlink(link)).name
        except OSError:
            return None

    def pending(self) -> Pending | None:
        data = _read_json(self._pending)
        if data is None:
            return None
        return Pending(str(data["version"]), data.get("previous"), float(data["deadline"]))

    def outcome(self) -> Outcome | None:
        data = _read_json(self._outcome)
        if data is None:
            return None
        return Outcome(str(data["version"]), bool(data["confirmed"]), str(data.get("reason", "")))

    # ------------------------------------------------------------- installing
    def install(self, bundle: Path, run: Runner) -> Manifest:
        """Build ``releases/<version>`` from ``bundle``; raises :class:`InstallError`
        (the bundle is unusable or an install step failed) and leaves ``current`` alone."""
        incoming = self.root / ".incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        try:
            manifest = read_bundle(bundle, incoming / "wheels")
        except (BundleError, OSError) as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise InstallError(f"bad bundle: {exc}", verification=True) from exc
        target = self.releases / manifest.version
        if self.current_version() == manifest.version:
            shutil.rmtree(incoming, ignore_errors=True)
            raise InstallError(f"release {manifest.version} is the one running")
        shutil.rmtree(target, ignore_errors=True)  # left over from a failed attempt
        self.releases.mkdir(parents=True, exist_ok=True)
        try:
            run([self.python, "-m", "venv", str(target)])
            run(
                [
                    str(target / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-index",
                    "--no-cache-dir",
                    "--disable-pip-version-check",
                    "--find-links",
                    str(incoming / "wheels"),
                    f"{manifest.name}=={manifest.version}",
                ]
            )
        except InstallError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return manifest

    def switch(self, version: str, *, now: float, confirm_within_s: float) -> Pending:
        """Make ``version`` current; it must be confirmed within ``confirm_within_s``."""
        if not (self.releases / version / "bin").is_dir():
            raise InstallError(f"release {version} is not installed")
        before = self.current_version()
        pending = Pending(version, before, now + confirm_within_s)
        _write_json(self._pending, asdict(pending))  # before the link: a crash rolls back
        if before is not None:
            self._relink(self.previous, before)
        self._relink(self.current, version)
        return pending

    def _relink(self, link: Path, version: str) -> None:
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("releases") / version)
        os.replace(tmp, link)  # atomic: the link names one complete release at all times

    # ------------------------------------------------------ confirm / roll back
    def confirm(self, version: str) -> bool:
        """The release ``version`` reached READY: keep it.  False if it was not pending
        (nothing to confirm, or another release is the pending one)."""
        pending = self.pending()
        if pending is None or pending.version != version:
            return False
        _write_json(self._outcome, asdict(Outcome(version, confirmed=True)))
        self._pending.unlink(missing_ok=True)
        return True

    def check(self, now: float) -> Outcome | None:
        """Roll back a pending release whose deadline has passed; the outcome if so."""
        pending = self.pending()
        if pending is None or now < pending.deadline:
            return None
        return self.rollback("not confirmed READY in time")

    def rollback(self, reason: str) -> Outcome | None:
        """Point ``current`` back at the release before the pending one."""
        pending = self.pending()
        if pending is None:
            return None
        if pending.previous is not None:
            self._relink(self.current, pending.previous)
        else:
            self.current.unlink(missing_ok=True)
        outcome = Outcome(pending.version, confirmed=False, reason=reason)
        _write_json(self._outcome, asdict(outcome))
        self._pending.unlink(missing_ok=True)
        return outcome
