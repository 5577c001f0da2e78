"""Run the SECC of the PyPI package ``iso15118==0.31.2`` on loopback (TEST-ONLY).

Runs ONLY under the oracle venv (``.oracle-venv/bin/python``: pydantic 1, py4j,
Java). Project code never imports this file; ``harness.py`` starts it as a
subprocess. Also holds the helpers ``run_evcc.py`` shares (package set-up, the
official-grammar EXI codec, the loopback check).

What is the package's and what is ours (docs/interop-iso15118.md has the details):

* theirs, unchanged: ``SECCCommunicationSession`` (the whole -20 state machine),
  ``SimEVSEController`` (the simulated EVSE), message models, the Java EXI codec.
* ours: the listening socket. Their ``CommunicationSessionHandler`` only opens a
  TCP server after an SDP request, on the link-local address of a named interface
  (default ``eth0``), and keys sessions by peer IP (two sessions from ``::1`` in a
  row collide). We bind ``[host]:port`` ourselves (loopback only) and start one of
  their ``SECCCommunicationSession`` objects per accepted connection, each with its
  own ``SimEVSEController``. No SDP server is started.
* optional, ``--codec official`` (default): their ``EXICodec`` with the -20 grammars
  replaced by grammars built by EXIficient's ``GrammarFactory`` from the official
  XSDs that ship with the package (the pre-compiled ones treat the 1024/2048-entry
  lists as unbounded). ``--codec package`` keeps their pre-compiled grammars.
* optional: ``--service`` / ``--control-mode`` filter what their simulator offers;
  without them the simulator answers exactly as shipped.
* ``--linger`` keeps their 2 s + 3 s wait before closing TCP after the last
  response; without it the connection closes as soon as the session ends.

stdout: ``{"listening": <port>}`` once ready, then one ``{"session_end": {...}}``
line per finished session (service time per response, from the first byte read
to the encoded response handed to the socket). Logs go to stderr. Runs until
SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import ipaddress
import json
import logging
import random
import re
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger("interop.secc")

#: --service -> (ServiceV20 name, Protocol name of the -20 namespace carrying it)
SERVICES: dict[str, tuple[str, str]] = {
    "ac": ("AC", "ISO_15118_20_AC"),
    "ac_bpt": ("AC_BPT", "ISO_15118_20_AC"),
    "dc": ("DC", "ISO_15118_20_DC"),
    "dc_bpt": ("DC_BPT", "ISO_15118_20_DC"),
}
#: --control-mode -> ControlMode parameter value (ISO 15118-20 Table 205 ff.)
CONTROL_MODES: dict[str, int] = {"scheduled": 1, "dynamic": 2}

DYNAMIC_PORT_ATTEMPTS = 50

#: private fields of their ``AbstractEXICodec`` holding the pre-compiled -20 grammars
_GRAMMAR_FIELDS: dict[str, str] = {
    "iso15118_20_V2G_CI_CommonMessages": "V2G_CI_CommonMessages.xsd",
    "iso15118_20_V2G_CI_AC": "V2G_CI_AC.xsd",
    "iso15118_20_V2G_CI_DC": "V2G_CI_DC.xsd",
}


# ----------------------------------------------------------------- shared set-up


def pkg(module: str) -> Any:
    """Import a module of the ``iso15118`` package (untyped, oracle venv only)."""
    return importlib.import_module(module)


def require_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address literal, else exit (never a real NIC)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        sys.exit(f"--host must be an IP literal on loopback (::1 or 127.0.0.1), got {host!r}")
    if not addr.is_loopback:
        sys.exit(f"refusing non-loopback address {host}")
    return host


def setup_package(log_level: str) -> None:
    """Configure the package explicitly: logging to stderr, shared settings.

    Importing ``iso15118.evcc`` / ``iso15118.secc`` runs their ``_init_logger()``,
    which points the root logger at **stdout** (their ``logging.conf``) and reads
    ``.env`` from the working directory; we move logging back to stderr and fill
    ``shared_settings`` ourselves instead of ``load_shared_settings()`` (which
    searches for ``.env`` files and reads environment variables).
    """
    settings = pkg("iso15118.shared.settings")
    key = settings.SettingKey

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(log_level)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    verbose = logging.getLevelName(log_level) <= logging.DEBUG
    settings.shared_settings.update(
        {
            # their PnC / TLS files (unused: EIM only, TLS contexts are ours)
            key.PKI_PATH: settings.SHARED_CWD + "/pki/",
            # their per-message JSON dump (INFO) costs time: only when debugging
            key.MESSAGE_LOG_JSON: verbose,
            key.MESSAGE_LOG_EXI: verbose,
            key.ENABLE_TLS_1_3: False,
        }
    )


def make_codec(kind: str) -> Any:
    """Their Java EXI codec; ``official`` swaps in grammars built from the official XSDs."""
    codec = pkg("iso15118.shared.exificient_exi_codec").ExificientEXICodec()
    if kind == "official":
        use_official_grammars(codec.exi_codec, codec.gateway.jvm)
        LOG.info("EXI codec: package EXICodec with official-XSD grammars for the -20 namespaces")
    return codec


def use_official_grammars(exi_codec: Any, jvm: Any) -> None:
    """Replace the pre-compiled -20 grammars inside one of their Java ``EXICodec`` objects.

    The grammars are built by EXIficient's ``GrammarFactory`` from the official XSDs
    shipped in the package and set, by reflection, into the private fields of their
    ``AbstractEXICodec``; their JSON <-> JAXB <-> XML path is left as it is.
    """
    schemas = Path(pkg("iso15118").__file__).parent / "shared" / "schemas"
    tmp = Path(tempfile.mkdtemp(prefix="iso15118-xsd-"))
    try:
        for xsd in [
            *schemas.glob("iso15118_20/*.xsd"),
            schemas / "xmldsig-core-schema.xsd",
            schemas / "V2G_CI_AppProtocol.xsd",
        ]:
            text = xsd.read_text(encoding="utf-8")
            # the xmldsig schema declares a DOCTYPE with an external DTD: no network here
            text = re.sub(r"<!DOCTYPE.*?\]>", "", text, flags=re.S)
            (tmp / xsd.name).write_text(text, encoding="utf-8")
        factory = jvm.com.siemens.ct.exi.grammars.GrammarFactory.newInstance()
        abstract_codec = exi_codec.getClass().getSuperclass()
        for field_name, xsd_name in _GRAMMAR_FIELDS.items():
            field = abstract_codec.getDeclaredField(field_name)
            field.setAccessible(True)
            field.set(exi_codec, factory.createGrammars(str(tmp / xsd_name)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tls_context(
    *,
    server: bool,
    cert: Path | None = None,
    key: Path | None = None,
    ca: Path | None = None,
) -> ssl.SSLContext:
    """TLS 1.3 context from explicit PEM files (their ``get_ssl_context`` is not used).

    Server: ``cert``/``key`` required, ``ca`` given -> client certificate required
    (mutual TLS). Client: ``ca`` (trust root) required, ``cert``/``key`` optional.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # [V2G20-2356]
    if not server:
        ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    if ca is not None:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def emit(obj: dict[str, Any]) -> None:
    """One JSON line on stdout (the only thing ever written there)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def summarise_ms(samples: list[float]) -> dict[str, float | int]:
    return {
        "n": len(samples),
        "median_ms": round(statistics.median(samples) * 1e3, 3),
        "max_ms": round(max(samples) * 1e3, 3),
    }


# ----------------------------------------------------------------------- SECC


def _session_classes(linger: bool) -> tuple[type[Any], type[Any]]:
    """Subclasses of their session and simulator (defined after the package import)."""
    control_mode = pkg("iso15118.shared.messages.enums").ParameterName.CONTROL_MODE
    session_base: Any = pkg("iso15118.secc.comm_session_handler").SECCCommunicationSession
    simulator_base: Any = pkg("iso15118.secc.controller.simulator").SimEVSEController

    class TimedSession(session_base):  # type: ignore[misc]
        """Their session; records per-response service time; optional fast close."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.service_s: dict[str, list[float]] = {}
            self.names: list[str] = []
            self._t_in = 0.0

        async def process_message(self, message: bytes) -> None:
            self._t_in = time.perf_counter()
            await super().process_message(message)

        async def send(self, message: Any) -> None:
            name = str(self.current_state.message)
            name = name[0].upper() + name[1:]  # their 'supportedAppProtocolRes'
            self.service_s.setdefault(name, []).append(time.perf_counter() - self._t_in)
            self.names.append(name)
            await super().send(message)

        async def stop(self, reason: str) -> None:
            if linger:
                await super().stop(reason)
                return
            await self.evse_controller.stop_charger()
            LOG.info("session stop: %s", reason)
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, TimeoutError) as exc:
                LOG.info("closing TCP: %s", exc)

    class FilteredSimEVSE(simulator_base):  # type: ignore[misc]
        """Their simulator; only narrows the offered services / control modes if asked."""

        def __init__(self, service_ids: set[int] | None, modes: set[int] | None) -> None:
            super().__init__()
            self._service_ids = service_ids
            self._modes = modes

        async def get_energy_service_list(self) -> Any:
            services = await super().get_energy_service_list()
            if self._service_ids is not None:
                services.services = [
                    s for s in services.services if s.service_id in self._service_ids
                ]
            return services

        async def get_service_parameter_list(self, service_id: int) -> Any:
            params = await super().get_service_parameter_list(service_id)
            if self._modes is not None and params is not None:
                params.parameter_sets = [
                    ps
                    for ps in params.parameter_sets
                    if any(
                        p.name == control_mode and p.int_value in self._modes for p in ps.parameters
                    )
                ]
            return params

    return TimedSession, FilteredSimEVSE


async def _listen(
    on_connect: Any, host: str, port: int, ssl_ctx: ssl.SSLContext | None
) -> asyncio.Server:
    """Bind ``[host]:port``; port 0 picks a free one in 49152-65535, as an SECC must.

    Their EVCC's ``SDPResponse`` refuses any other port (``MIN_TCP_PORT``).
    """
    if port != 0:
        return await asyncio.start_server(on_connect, host, port, ssl=ssl_ctx)
    for _ in range(DYNAMIC_PORT_ATTEMPTS):
        try:
            return await asyncio.start_server(
                on_connect, host, random.randint(49152, 65535), ssl=ssl_ctx
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free TCP port in 49152-65535 on {host}")


async def serve(opts: argparse.Namespace) -> None:
    enums = pkg("iso15118.shared.messages.enums")
    ready = pkg("iso15118.secc.controller.interface").ServiceStatus.READY
    timeouts = pkg("iso15118.shared.messages.timeouts").Timeouts

    pkg("iso15118.shared.exi_codec").EXI().set_exi_codec(make_codec(opts.codec))
    session_cls, controller_cls = _session_classes(opts.linger)

    services = opts.service or sorted(SERVICES)
    config = pkg("iso15118.secc.secc_settings").Config()
    config.iface = "lo"  # unused: we own the socket; never a real interface
    config.log_level = opts.log_level
    config.supported_protocols = sorted(
        {enums.Protocol[SERVICES[s][1]] for s in services}, key=lambda p: p.name
    )
    # PnC needs the package's test PKI and TLS; the harness runs EIM only
    config.supported_auth_options = [enums.AuthEnum.EIM]
    config.enforce_tls = opts.tls == "on"
    config.allow_cert_install_service = False
    config.free_charging_service = False
    config.standby_allowed = False
    service_ids = (
        {enums.ServiceV20[SERVICES[s][0]].id for s in opts.service} if opts.service else None
    )
    modes = {CONTROL_MODES[m] for m in opts.control_mode} if opts.control_mode else None

    ssl_ctx = None
    if opts.tls == "on":
        if opts.tls_cert is None or opts.tls_key is None:
            sys.exit("--tls on needs --tls-cert and --tls-key")
        ssl_ctx = tls_context(
            server=True, cert=opts.tls_cert, key=opts.tls_key, ca=opts.tls_client_ca
        )

    counter = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        counter += 1
        number = counter
        peer = writer.get_extra_info("peername")
        LOG.info("session %d: TCP client %s", number, peer)
        controller = controller_cls(service_ids, modes)
        await controller.set_status(ready)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        session = session_cls(
            (reader, writer),
            queue,
            config,
            controller,
            await controller.get_evse_id(enums.Protocol.UNKNOWN),
        )
        t0 = time.perf_counter()
        await session.start(timeouts.V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT)
        stop = queue.get_nowait() if not queue.empty() else None
        emit(
            {
                "session_end": {
                    "number": number,
                    "ok": bool(stop is not None and stop.successful),
                    "reason": None if stop is None else stop.reason,
                    "responses": session.names,
                    "service_time": {k: summarise_ms(v) for k, v in session.service_s.items()},
                    "duration_s": round(time.perf_counter() - t0, 3),
                }
            }
        )

    server = await _listen(on_connect, opts.host, opts.port, ssl_ctx)
    port = server.sockets[0].getsockname()[1]
    LOG.info("their SECC listening on [%s]:%d (%s)", opts.host, port, "TLS" if ssl_ctx else "TCP")
    emit({"listening": port})

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    async with server:
        await done.wait()
    LOG.info("stopped after %d session(s)", counter)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="::1")
    p.add_argument("--port", type=int, default=0, help="0: a free port in 49152-65535")
    p.add_argument("--tls", choices=("on", "off"), default="off")
    p.add_argument("--tls-cert", type=Path, help="SECC certificate chain (PEM), leaf first")
    p.add_argument("--tls-key", type=Path, help="SECC private key (PEM, unencrypted)")
    p.add_argument("--tls-client-ca", type=Path, help="require an EV certificate from this CA")
    p.add_argument(
        "--service",
        action="append",
        choices=sorted(SERVICES),
        help="offer only these energy services (repeatable; default: as their simulator)",
    )
    p.add_argument(
        "--control-mode",
        action="append",
        choices=sorted(CONTROL_MODES),
        help="offer only parameter sets with these control modes (repeatable)",
    )
    p.add_argument("--codec", choices=("official", "package"), default="official")
    p.add_argument("--linger", action="store_true", help="keep their 5 s close delay")
    p.add_argument("--log-level", default="WARNING")
    opts = p.parse_args(argv)
    require_loopback(opts.host)
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # importing iso15118.secc configures logging to stdout; setup_package undoes it
    pkg("iso15118.secc")

    setup_package(opts.log_level)
    asyncio.run(serve(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
