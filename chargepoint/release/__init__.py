"""Releases on the station: signed bundles installed side by side, switched atomically.

On-device layout (``root``, e.g. ``/opt/chargepoint``)::

    releases/<version>/   one virtual environment per release
    current -> releases/<version>     what systemd starts (ExecStart=current/bin/...)
    previous -> releases/<version>    the release that ran before the last switch
    pending.json          a switched release not yet confirmed (READY within the timeout)
    outcome.json          what became of the last switch: confirmed or rolled back

A bundle is a tar or zip file: ``manifest.json`` (``name``, ``version``) and the
wheels of the package and of all its dependencies under ``wheels/``, so installing
needs no package index.  This package is the file logic only: the processes
(``python -m venv``, ``pip``) run through an injected :class:`Runner` and the time
is an argument, so the logic is tested without a real clock.  The command line is
:mod:`chargepoint.adapters.release`.
"""

from __future__ import annotations

from chargepoint.release.bundle import BundleError, Manifest, build_bundle, read_bundle
from chargepoint.release.install import (
    InstallError,
    Outcome,
    Pending,
    Releases,
    Runner,
)

__all__ = [
    "BundleError",
    "InstallError",
    "Manifest",
    "Outcome",
    "Pending",
    "Releases",
    "Runner",
    "build_bundle",
    "read_bundle",
]
