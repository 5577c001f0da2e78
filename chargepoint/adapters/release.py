"""Command line of the release installer: ``python -m chargepoint.adapters.release``.

Standard library only, so it runs from a source checkout, from any release's
interpreter, or from systemd's ``ExecStartPre=`` (the rollback check)::

    python -m chargepoint.adapters.release build WHEELS_DIR --name chargepoint --version V -o B.tar
    python -m chargepoint.adapters.release install BUNDLE --root /opt/chargepoint
    python -m chargepoint.adapters.release check --root /opt/chargepoint
    python -m chargepoint.adapters.release confirm VERSION --root /opt/chargepoint
    python -m chargepoint.adapters.release rollback --root /opt/chargepoint

Exit status: 0 done (``check``: nothing to roll back), 1 failed, 3 ``check`` rolled back.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chargepoint.release import InstallError, Manifest, Releases, build_bundle

#: how long a new release has to report READY before the check rolls it back
DEFAULT_CONFIRM_WITHIN_S = 300.0
ROLLED_BACK = 3


def run_process(argv: Sequence[str]) -> None:
    """The :class:`~chargepoint.release.Runner` for real processes."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise InstallError(f"{Path(argv[0]).name} {argv[1:3]} failed: {' / '.join(tail)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chargepoint.adapters.release")
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="bundle a directory of wheels")
    build.add_argument("wheels", type=Path)
    build.add_argument("--name", default="chargepoint")
    build.add_argument("--version", required=True)
    build.add_argument("-o", "--output", type=Path, required=True)
    for name in ("install", "check", "confirm", "rollback"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--root", type=Path, required=True)
        if name == "install":
            cmd.add_argument("bundle", type=Path)
            cmd.add_argument("--confirm-within", type=float, default=DEFAULT_CONFIRM_WITHIN_S)
        if name == "confirm":
            cmd.add_argument("version")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        build_bundle(args.wheels, Manifest(args.name, args.version), args.output)
        return 0
    releases = Releases(args.root, python=sys.executable)
    try:
        if args.cmd == "install":
            manifest = releases.install(args.bundle, run_process)
            releases.switch(manifest.version, now=time.time(), confirm_within_s=args.confirm_within)
            print(f"release {manifest.version} is current; confirm within {args.confirm_within} s")
        elif args.cmd == "check":
            outcome = releases.check(time.time())
            if outcome is not None:
                print(f"rolled back {outcome.version}: {outcome.reason}", file=sys.stderr)
                return ROLLED_BACK
        elif args.cmd == "confirm":
            return 0 if releases.confirm(args.version) else 1
        else:
            releases.rollback("rolled back by the operator")
    except InstallError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
