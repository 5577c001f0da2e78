"""Command line: ``chargepoint run | check-config | sim | demo | diagram``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chargepoint import __version__
from chargepoint.config import Config, format_problems, load_config
from chargepoint.errors import ConfigError
from hal.errors import HalInitError

log = logging.getLogger("chargepoint")

# Relative to the working directory: the README runs commands from the clone.
DEFAULT_CONFIG = Path("config") / "sim.toml"
DEFAULT_V2G_CONFIG = Path("config") / "sim-v2g.toml"  # `chargepoint demo`


def default_config_path() -> Path:
    """The simulated configuration shipped in the repository."""
    return DEFAULT_CONFIG


def _load(path: Path) -> Config | None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(format_problems(exc), file=sys.stderr)
        return None
    for warning in config.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    return config


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str = "text", stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)  # type: ignore[arg-type]
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s")
        formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
        formatter.default_msec_format = "%s.%03d"
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    from chargepoint.adapters.log_redaction import RedactSecrets  # noqa: PLC0415

    handler.addFilter(RedactSecrets())  # no credential in any log, at any level
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # transitions logs every state entry at INFO; our runner logs the changes once.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    # websockets logs every frame at DEBUG while it parses a whole received chunk in
    # one callback: under a flood that alone stalls the event loop. Our OCPP client
    # logs each frame itself (at DEBUG, as it handles it, between yields).
    logging.getLogger("websockets").setLevel(max(logging.INFO, root.level))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(Path(args.file))
    if config is None:
        return 1
    print(f"{args.file}: OK ({len(config.evse)} EVSE(s), station {config.station.id})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from chargepoint.app import Station  # noqa: PLC0415 - keep check-config light

    config = _load(Path(args.config))
    if config is None:
        return 1
    setup_logging(args.log_level or config.runtime.log_level, config.runtime.log_format)
    log.info("chargepoint %s starting with %s", __version__, args.config)
    try:
        station = Station(config)
    except ConfigError as exc:
        print(format_problems(exc), file=sys.stderr)
        return 1
    code = 0
    try:
        asyncio.run(station.run())
    except* HalInitError as group:  # a device that cannot be opened: name it, once
        code = _start_failure(group, EX_UNAVAILABLE)
    except* ConfigError as group:
        for problem in group.exceptions:
            assert isinstance(problem, ConfigError)
            print(format_problems(problem), file=sys.stderr)
        code = EX_CONFIG
    except* OSError as group:  # state dir or control-socket dir that cannot be made
        code = _start_failure(group, EX_CANTCREAT)
    if code:
        return code
    # EX_TEMPFAIL: systemd (Restart=on-failure) starts the service again after a CSMS Reset.
    return 75 if station.restart_requested else 0


EX_UNAVAILABLE = 69  # sysexits.h: a device is missing or unusable
EX_CANTCREAT = 73  # sysexits.h: a directory or socket cannot be created
EX_CONFIG = 78  # sysexits.h: the configuration is wrong


def _start_failure(group: BaseExceptionGroup[Exception], code: int) -> int:
    """One clear line per failure (no traceback) on stderr and in the log."""
    for exc in group.exceptions:
        log.critical("cannot run: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
    return code


def cmd_sim(args: argparse.Namespace) -> int:
    message = {"cmd": "sim", "evse": args.evse, "name": args.command, "args": args.args}
    if args.command in ("status",):
        message = {"cmd": "status"}
    elif args.command == "tap":  # a card held over the EVSE's simulated reader
        message = {"cmd": "tap", "evse": args.evse, "token": " ".join(args.args)}
    return _control(args, message)


def cmd_clear_faults(args: argparse.Namespace) -> int:
    return _control(args, {"cmd": "clear-faults", "evse": args.evse, "service": args.service})


def _control(args: argparse.Namespace, message: dict[str, object]) -> int:
    """One request to the running service's control socket; prints the answer."""
    from chargepoint.adapters.control_socket import request  # noqa: PLC0415

    config = _load(Path(args.config))
    if config is None:
        return 1
    socket_path = Path(args.socket or config.runtime.control_socket)
    try:
        answer = asyncio.run(request(socket_path, message))
    except (OSError, TimeoutError) as exc:
        print(f"cannot reach the service at {socket_path}: {exc}", file=sys.stderr)
        return 2
    if not answer.get("ok"):
        print(f"error: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer["result"], indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.basic:
        from chargepoint.demo.basic import run_demo  # noqa: PLC0415

        config = _load(Path(args.config or default_config_path()))
        if config is None:
            return 1
        setup_logging(args.log_level, config.runtime.log_format, sys.stderr)
        return asyncio.run(run_demo(config, charge_s=args.seconds, out=sys.stdout))
    from chargepoint.demo.basic import DemoError  # noqa: PLC0415
    from chargepoint.demo.v2g import run_v2g_demo  # noqa: PLC0415

    config = _load(Path(args.config or DEFAULT_V2G_CONFIG))
    if config is None:
        return 1
    setup_logging(args.log_level, config.runtime.log_format, sys.stderr)
    try:
        return asyncio.run(run_v2g_demo(config, phase_s=args.seconds / 3.0, out=sys.stdout))
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


def cmd_diagram(args: argparse.Namespace) -> int:
    from chargepoint.iec61851.diagram import secc_to_dot, to_dot  # noqa: PLC0415

    print(secc_to_dot() if args.secc else to_dot())
    return 0


def cmd_exi(args: argparse.Namespace) -> int:
    from chargepoint.iso15118.exi.cli import decode_command, encode_command  # noqa: PLC0415
    from chargepoint.iso15118.exi.errors import ExiDecodeError, ExiEncodeError  # noqa: PLC0415

    try:
        if args.exi_command == "decode":
            payload_type = int(args.payload_type, 0) if args.payload_type else None
            print(decode_command(args.hex, payload_type))
        else:
            print(encode_command(Path(args.file).read_text()))
    except (ExiDecodeError, ExiEncodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_pki(args: argparse.Namespace) -> int:
    from chargepoint.adapters.v2g_pki import (  # noqa: PLC0415
        DEFAULT_SECC_ID,
        PkiError,
        create_test_pki,
    )

    directory = Path(args.dir)
    secc_id = args.secc_id or DEFAULT_SECC_ID
    try:
        pki = create_test_pki(directory, secc_name=secc_id, force=args.force)
    except (PkiError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ISO 15118-20 test PKI for SECC {secc_id} written to {directory}")
    print("  (README.txt says which file is what; pki.json is the manifest)")
    print(f"  SECC (charger): {pki.secc_chain} + {pki.secc_key}, trusts {pki.oem_root_cert}")
    print(f"  EV (car):       {pki.ev_chain} + {pki.ev_key}, trusts {pki.v2g_root_cert}")
    print(f"  contract:       {pki.contract_chain} + {pki.contract_key}")
    return 0


def cmd_slac(args: argparse.Namespace) -> int:
    from chargepoint.adapters.slac_listen import slac_listen  # noqa: PLC0415

    setup_logging(args.log_level, "text", sys.stderr)
    return asyncio.run(slac_listen(args.interface, timeout_s=args.timeout))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargepoint", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chargepoint {__version__}")
    sub = parser.add_subparsers(dest="command_name", required=True)

    p = sub.add_parser("run", help="run the charger service")
    p.add_argument(
        "--config", default=str(default_config_path()), help="TOML file (default: %(default)s)"
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("sim", help="drive the simulated EV of a running service")
    p.add_argument(
        "command",
        help="plug, unplug, start, stop, status, soc PCT, fault KIND [on|off], setpoint W, "
        "tap UID (a card on the simulated reader, e.g. 04A2B3C4), "
        "car commands (stop, pause, discharge on, ...), slac ok|fail [WHERE]|slow S|loss P",
    )
    p.add_argument("args", nargs="*")
    p.add_argument("--evse", type=int, default=1)
    p.add_argument("--config", default=str(default_config_path()))
    p.add_argument("--socket", help="control socket (default: from the config)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser(
        "clear-faults",
        help="release latched faults whose conditions have gone (after the F pulse, "
        "with the car out of C/D); --service also releases those that need a service reset",
    )
    p.add_argument(
        "--service",
        action="store_true",
        help="service reset by a technician: welded contactor, board-internal or repeated faults",
    )
    p.add_argument("--evse", type=int, default=1)
    p.add_argument("--config", default=str(default_config_path()))
    p.add_argument("--socket", help="control socket (default: from the config)")
    p.set_defaults(func=cmd_clear_faults)

    p = sub.add_parser(
        "demo",
        help="a simulated ISO 15118-20 DC_BPT session over TLS (charge, discharge, charge)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=9.0,
        help="energy-transfer time, split over charge/discharge/charge (default: %(default)s)",
    )
    p.add_argument(
        "--basic",
        action="store_true",
        help="the IEC 61851-1 basic AC charging demo instead (config/sim.toml)",
    )
    p.add_argument(
        "--config", help=f"configuration (default: {DEFAULT_V2G_CONFIG}, --basic: {DEFAULT_CONFIG})"
    )
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("exi", help="ISO 15118-20 EXI dissector: decode hex, encode JSON")
    exi = p.add_subparsers(dest="exi_command", required=True)
    d = exi.add_parser("decode", help="decode an EXI payload (hex) and print it as JSON")
    d.add_argument("hex", help="EXI payload in hex (a leading V2GTP header is accepted)")
    d.add_argument(
        "--payload-type", help="V2GTP payload type, e.g. 0x8004 (default: detect from the data)"
    )
    e = exi.add_parser("encode", help="encode a JSON message file and print the EXI hex")
    e.add_argument("file")
    p.set_defaults(func=cmd_exi)

    p = sub.add_parser("pki", help="ISO 15118-20 certificates")
    pki = p.add_subparsers(dest="pki_command", required=True)
    t = pki.add_parser("create-test", help="write a test PKI (unencrypted keys) into DIR")
    t.add_argument("dir", metavar="DIR")
    t.add_argument("--force", action="store_true", help="overwrite a non-empty DIR")
    t.add_argument("--secc-id", help="CN of the SECC certificate (default: a test id)")
    p.set_defaults(func=cmd_pki)

    p = sub.add_parser("slac", help="ISO 15118-3 SLAC on the PLC modem")
    slac = p.add_subparsers(dest="slac_command", required=True)
    s = slac.add_parser(
        "listen", help="run one SECC-side matching on IFACE; print EV MAC, NID, attenuation"
    )
    s.add_argument("--interface", required=True, metavar="IFACE", help="PLC interface, e.g. eth1")
    s.add_argument("--timeout", type=float, default=60.0, metavar="S", help="(default: 60)")
    s.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_slac)

    p = sub.add_parser("diagram", help="print a state machine as Graphviz dot (its table)")
    p.add_argument(
        "--secc", action="store_true", help="the ISO 15118-20 SECC session instead of the EVSE"
    )
    p.set_defaults(func=cmd_diagram)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
