"""Run ONE ISO 15118-20 session of the EVCC of ``iso15118==0.31.2`` on loopback (TEST-ONLY).

Runs ONLY under the oracle venv (``.oracle-venv/bin/python``); ``harness.py`` starts
it as a subprocess. It drives THEIR EV stack (state machine ``iso15118.evcc.states``,
simulator ``SimEVController``, Java EXI codec) against a SECC at ``[host]:port``.

What is the package's and what is ours (docs/interop-iso15118.md has the details):

* discovery: their ``CommunicationSessionHandler`` finds the SECC only by SDP
  multicast to ``ff02::1`` on a named interface (default ``eth0``) and then connects
  to ``<addr>%<iface>``. We do not start it. Without ``--sdp-port`` we connect
  straight to ``[host]:port``; with ``--sdp-port P`` we send their ``SDPRequest``
  UNICAST to ``[host]:P`` (a loopback SDP responder), accept only a loopback
  address in the ``SDPResponse`` and connect there. Nothing is bound or sent on a
  non-loopback interface.
* session: their ``EVCCCommunicationSession`` on our TCP (or TLS) stream: their
  ``send_sap()`` and ``start()``; ``stop()`` is overridden to close TCP at once
  unless ``--linger`` (theirs waits 2 s + 3 s after SessionStopRes).
* EV: their ``SimEVController`` with two overrides: the energy service / parameter
  set is picked by ``--service`` / ``--control-mode`` (theirs takes the first
  service and parameter set offered), and no value-added service is selected
  (theirs indexes the never-requested parameter sets of every offered VAS).
  The session ends by itself: their simulator stops after ``--loops`` charge-loop
  cycles (``chargeLoopCycle``) or at 100 % SoC, then PowerDelivery(Stop),
  [DC_WeldingDetection], SessionStop(Terminate).
* pacing: ``--loop-delay S`` is their ``chargeLoopDelay`` (whole seconds between
  charge-loop requests; their default, 0, is kept by default).
* codec: as in ``run_secc.py`` (``--codec official`` by default).

stdout: exactly one JSON line at the end::

    {"ok": true, "messages": ["SupportedAppProtocolReq", ...],
     "response_codes": {"SessionSetupRes": {"OK_NewSessionEstablished": 1}, ...},
     "responses": [["SupportedAppProtocolRes", "OK_SuccessfulNegotiation"], ...],
     "charge_loops": 10, "loop_control_mode": "BPT_Dynamic_DC_CLReqControlMode",
     "selected_service": {"ServiceID": 6, "ParameterSetID": 2},
     "rtt": {"DC_ChargeLoopReq": {"n": .., "median_ms": .., "max_ms": ..}}, "error": null, ...}

``rtt`` is measured inside their EVCC from the end of encoding a request to the
start of decoding its response (TCP both ways plus the SECC's whole service time).
Exit code 0 only when SessionStopRes arrived with an OK response code and their
state machine ended successfully. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``tests.`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.iso15118.interop.run_secc import (
    CONTROL_MODES,
    SERVICES,
    emit,
    make_codec,
    pkg,
    require_loopback,
    setup_package,
    summarise_ms,
    tls_context,
)

LOG = logging.getLogger("interop.evcc")


class Recorder:
    """What crossed the wire, seen at their codec boundary (one session per process)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.received: list[tuple[str, str | None]] = []
        self.rtt_s: dict[str, list[float]] = {}
        self.loop_control_mode: str | None = None
        self.selected_service: dict[str, Any] | None = None
        self._last_sent: tuple[str, float] | None = None

    @staticmethod
    def root(doc: str) -> tuple[str, dict[str, Any]]:
        data = json.loads(doc)
        name = next(iter(data))
        body = data[name]
        # their SAP JSON uses the XSD's lower-case 'supportedAppProtocolReq/Res'
        return name[0].upper() + name[1:], body if isinstance(body, dict) else {}

    def on_encoded(self, doc: str) -> None:
        name, body = self.root(doc)
        if not name.endswith("Req"):  # (signature fragments are encoded too)
            return
        self.sent.append(name)
        if name == "ServiceSelectionReq":
            self.selected_service = body.get("SelectedEnergyTransferService")
        if name.endswith("ChargeLoopReq") and self.loop_control_mode is None:
            self.loop_control_mode = next((k for k in body if k.endswith("ControlMode")), None)
        self._last_sent = (name, time.perf_counter())

    def on_decoding(self, t: float, doc: str) -> None:
        name, body = self.root(doc)
        code = body.get("ResponseCode")
        self.received.append((name, None if code is None else str(code)))
        if self._last_sent is not None:
            req, t_sent = self._last_sent
            self.rtt_s.setdefault(req, []).append(t - t_sent)
            self._last_sent = None


def _evcc_classes(linger: bool, recorder: Recorder) -> tuple[type[Any], type[Any], type[Any]]:
    """Subclasses of their session, simulator and codec interface (after the import)."""
    control_mode = pkg("iso15118.shared.messages.enums").ParameterName.CONTROL_MODE
    selected_cls = pkg("iso15118.shared.messages.iso15118_20.common_messages").SelectedEnergyService
    session_base: Any = pkg("iso15118.evcc.comm_session_handler").EVCCCommunicationSession
    simulator_base: Any = pkg("iso15118.evcc.controller.simulator").SimEVController
    codec_base: Any = pkg("iso15118.shared.iexi_codec").IEXICodec

    class HarnessSession(session_base):  # type: ignore[misc]
        """Their session; without --linger TCP closes right after the last response."""

        async def stop(self, reason: str) -> None:
            if linger:
                await super().stop(reason)
                return
            LOG.info("session stop: %s", reason)
            await self.ev_controller.enable_charging(False)
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, TimeoutError) as exc:
                LOG.info("closing TCP: %s", exc)

    class HarnessEV(simulator_base):  # type: ignore[misc]
        """Their simulated EV; picks service + control mode as asked, selects no VAS."""

        def __init__(self, config: Any, service: str, control_mode: int) -> None:
            super().__init__(config)
            self._service = service
            self._control_mode = control_mode

        async def select_energy_service_v20(self, services: list[Any]) -> Any:
            for matched in services:
                if not matched.is_energy_service or matched.service.name != self._service:
                    continue
                for pset in matched.parameter_sets:
                    if any(
                        p.name == control_mode and p.int_value == self._control_mode
                        for p in pset.parameters
                    ):
                        return selected_cls(
                            service=matched.service, is_free=matched.is_free, parameter_set=pset
                        )
            raise LookupError(
                f"SECC offers no parameter set with ControlMode={self._control_mode} "
                f"for {self._service}"
            )

        async def select_vas_services_v20(self, services: list[Any]) -> list[Any]:
            return []

    class RecordingCodec(codec_base):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def encode(self, message: str, namespace: str) -> bytes:
            data: bytes = self.inner.encode(message, namespace)
            recorder.on_encoded(message)
            return data

        def decode(self, stream: bytes, namespace: str) -> str:
            t = time.perf_counter()
            doc: str = self.inner.decode(stream, namespace)
            recorder.on_decoding(t, doc)
            return doc

        def get_version(self) -> str:
            return str(self.inner.get_version())

    return HarnessSession, HarnessEV, RecordingCodec


class _SDPClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.responses: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.responses.put_nowait(data)


async def discover(host: str, sdp_port: int, tls: bool) -> tuple[str, int, bool]:
    """SDP by UNICAST to [host]:sdp_port with their message classes; loopback answers only."""
    sdp = pkg("iso15118.shared.messages.sdp")
    unknown = pkg("iso15118.shared.messages.enums").Protocol.UNKNOWN
    v2gtp = pkg("iso15118.shared.messages.v2gtp").V2GTPMessage
    retries = pkg("iso15118.evcc.comm_session_handler").SDP_MAX_REQUEST_COUNTER
    wait_s = pkg("iso15118.shared.messages.timeouts").Timeouts.SDP_REQ

    request = sdp.SDPRequest(
        security=sdp.Security.TLS if tls else sdp.Security.NO_TLS,
        transport_protocol=sdp.Transport.TCP,
    )
    datagram = v2gtp(unknown, request.payload_type, request.to_payload()).to_bytes()
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _SDPClient, remote_addr=(host, sdp_port), family=family
    )
    try:
        for _ in range(retries):
            LOG.info("SDP request to [%s]:%d: %s", host, sdp_port, datagram.hex())
            transport.sendto(datagram)
            try:
                data = await asyncio.wait_for(proto.responses.get(), wait_s)
            except TimeoutError:
                continue
            response = sdp.SDPResponse.from_payload(v2gtp.from_bytes(unknown, data).payload)
            if not hasattr(response, "port"):  # their constructor logs and returns early
                raise ConnectionError(
                    f"their SDPResponse rejected {data.hex()} (TCP port must be 49152-65535)"
                )
            secc = ipaddress.IPv6Address(int.from_bytes(response.ip_address, "big"))
            if not secc.is_loopback:
                raise ConnectionRefusedError(f"SDP response names non-loopback SECC {secc}")
            LOG.info("SDP response: %s", response)
            return str(secc), int(response.port), response.security == sdp.Security.TLS
    finally:
        transport.close()
    raise ConnectionError(f"no SDP response from [{host}]:{sdp_port} after {retries} requests")


async def run_session(opts: argparse.Namespace, recorder: Recorder) -> tuple[bool, str | None]:
    """One session; returns (their state machine ended successfully, stop reason)."""
    session_cls, ev_cls, codec_cls = _evcc_classes(opts.linger, recorder)
    pkg("iso15118.shared.exi_codec").EXI().set_exi_codec(codec_cls(make_codec(opts.codec)))
    service, protocol = SERVICES[opts.service]
    tls = opts.tls == "on"
    config = pkg("iso15118.evcc.evcc_config").EVCCConfig(
        supportedEnergyServices=[service],
        supportedProtocols=[protocol],
        useTls=tls,
        enforceTls=tls,
        isCertInstallNeeded=False,
        sdpRetryCycles=1,
        chargeLoopCycle=opts.loops,
        chargeLoopDelay=opts.loop_delay,
    )
    config.load_raw_values()
    ev = ev_cls(config, service, CONTROL_MODES[opts.control_mode])

    host, port = opts.host, opts.port
    if opts.sdp_port is not None:
        host, port, secc_tls = await discover(opts.host, opts.sdp_port, tls)
        if secc_tls != tls:
            return False, f"SDP security mismatch: SECC signals TLS={secc_tls}, asked TLS={tls}"
    ssl_ctx = None
    if tls:
        ssl_ctx = tls_context(server=False, cert=opts.tls_cert, key=opts.tls_key, ca=opts.tls_ca)
    reader, writer = await asyncio.open_connection(require_loopback(host), port, ssl=ssl_ctx)
    LOG.info("connected to [%s]:%d (%s)", host, port, "TLS" if tls else "TCP")
    queue: asyncio.Queue[Any] = asyncio.Queue()
    session = session_cls((reader, writer), queue, config, "lo", ev)
    session.is_tls = tls
    await session.send_sap()
    await session.start(
        pkg("iso15118.shared.messages.timeouts").Timeouts.SUPPORTED_APP_PROTOCOL_REQ
    )
    if queue.empty():
        return False, "their state machine ended without a stop notification"
    stop = queue.get_nowait()
    return bool(stop.successful), str(stop.reason)


async def main_async(opts: argparse.Namespace) -> dict[str, Any]:
    recorder = Recorder()
    t0 = time.perf_counter()
    error: str | None = None
    successful = False
    try:
        successful, reason = await asyncio.wait_for(run_session(opts, recorder), opts.timeout)
        if not successful:
            error = reason
    except TimeoutError:
        error = f"session not complete after {opts.timeout} s"
    except (OSError, LookupError, ValueError) as exc:  # (ssl.SSLError is an OSError)
        error = f"{type(exc).__name__}: {exc}"
    last = recorder.received[-1] if recorder.received else None
    stopped_ok = (
        last is not None
        and last[0] == "SessionStopRes"
        and last[1] is not None
        and last[1].startswith("OK")
    )
    if successful and not stopped_ok and error is None:
        error = f"last response {last}, not SessionStopRes OK"
    codes: dict[str, dict[str, int]] = {}
    for name, code in recorder.received:
        per = codes.setdefault(name, {})
        per[str(code)] = per.get(str(code), 0) + 1
    return {
        "ok": bool(successful and stopped_ok),
        "messages": recorder.sent,
        "response_codes": codes,
        "responses": [list(r) for r in recorder.received],
        "charge_loops": sum(1 for m in recorder.sent if m.endswith("ChargeLoopReq")),
        "loop_control_mode": recorder.loop_control_mode,
        "selected_service": recorder.selected_service,
        "rtt": {k: summarise_ms(v) for k, v in recorder.rtt_s.items()},
        "service": opts.service,
        "control_mode": opts.control_mode,
        "codec": opts.codec,
        "duration_s": round(time.perf_counter() - t0, 3),
        "error": error,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="::1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sdp-port", type=int, help="do SDP by unicast to [host]:SDP_PORT first")
    p.add_argument("--service", choices=sorted(SERVICES), default="dc_bpt")
    p.add_argument("--control-mode", choices=sorted(CONTROL_MODES), default="dynamic")
    p.add_argument("--tls", choices=("on", "off"), default="off")
    p.add_argument("--tls-ca", type=Path, help="trust root for the SECC certificate (PEM)")
    p.add_argument("--tls-cert", type=Path, help="EV certificate chain (PEM) for mutual TLS")
    p.add_argument("--tls-key", type=Path, help="EV private key (PEM, unencrypted)")
    p.add_argument("--loops", type=int, default=10, help="their chargeLoopCycle")
    p.add_argument("--loop-delay", type=int, default=0, help="their chargeLoopDelay, s")
    p.add_argument("--timeout", type=float, default=60.0, help="whole session, s")
    p.add_argument("--codec", choices=("official", "package"), default="official")
    p.add_argument("--linger", action="store_true", help="keep their 5 s close delay")
    p.add_argument("--seed", type=int, default=1, help="their simulator's random.getrandbits")
    p.add_argument("--log-level", default="WARNING")
    opts = p.parse_args(argv)
    require_loopback(opts.host)
    if opts.tls == "on" and opts.tls_ca is None:
        p.error("--tls on needs --tls-ca")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # importing iso15118.evcc configures logging to stdout; setup_package undoes it
    pkg("iso15118.evcc")

    setup_package(opts.log_level)
    # their SimEVController answers "EVProcessing=Ongoing" at random (ScheduleExchange /
    # PowerDelivery); a fixed seed makes the message sequence reproducible
    random.seed(opts.seed)
    result = asyncio.run(main_async(opts))
    emit(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
