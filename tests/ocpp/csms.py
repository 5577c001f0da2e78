"""A CSMS for the adapter tests: the `ocpp` package's server side on 127.0.0.1:0.

The package's ChargePoint runs as the CSMS with @on handlers; a thin wrapper
around the server connection records every raw frame in both directions, so
tests can also send frames the package would never produce (malformed ones,
unknown actions) and read the exact answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePointV21
from ocpp.v201 import ChargePoint as ChargePointV201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol


def utc_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class _Recorder:
    """What the package's ChargePoint sees as its connection."""

    def __init__(self, ws: ServerConnection, csms: Csms) -> None:
        self.ws = ws
        self.csms = csms

    async def recv(self) -> str | bytes:
        text = await self.ws.recv()
        self.csms.record("in", json.loads(text) if _is_json(text) else text)
        return text

    async def send(self, text: str) -> None:
        self.csms.record("out", json.loads(text))
        await self.ws.send(text)


def _is_json(text: str | bytes) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class _Handlers:
    """The CSMS-side @on handlers, shared by the 2.0.1 and 2.1 classes."""

    csms: Csms

    @on("BootNotification")
    def on_boot(self, **kwargs: Any) -> Any:
        self.csms.boots += 1
        status, interval = self.csms.boot_answer
        return self._result("BootNotification")(
            current_time=utc_now(), interval=interval, status=status
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return self._result("Heartbeat")(current_time=utc_now())

    @on("StatusNotification")
    def on_status(self, **kwargs: Any) -> Any:
        return self._result("StatusNotification")()

    @on("TransactionEvent")
    def on_transaction_event(self, **kwargs: Any) -> Any:
        if self.csms.fail_transaction_events:
            raise ConnectionRefusedError("simulated CSMS failure")
        return self._result("TransactionEvent")()

    @on("MeterValues")
    def on_meter_values(self, **kwargs: Any) -> Any:
        return self._result("MeterValues")()

    @on("NotifyReport")
    def on_notify_report(self, **kwargs: Any) -> Any:
        return self._result("NotifyReport")()

    @on("NotifyEvent")
    def on_notify_event(self, **kwargs: Any) -> Any:
        return self._result("NotifyEvent")()

    @on("SecurityEventNotification")
    def on_security_event(self, **kwargs: Any) -> Any:
        return self._result("SecurityEventNotification")()

    @on("SignCertificate")
    def on_sign_certificate(self, **kwargs: Any) -> Any:
        return self._result("SignCertificate")(status="Accepted")

    @on("Authorize")
    def on_authorize(self, **kwargs: Any) -> Any:
        status = self.csms.authorize_answers.get(kwargs["id_token"]["id_token"], "Invalid")
        return self._result("Authorize")(id_token_info={"status": status})

    @on("NotifyEVChargingNeeds")
    def on_ev_charging_needs(self, **kwargs: Any) -> Any:
        return self._result("NotifyEVChargingNeeds")(status=self.csms.charging_needs_answer)

    @on("NotifyEVChargingSchedule")
    def on_ev_charging_schedule(self, **kwargs: Any) -> Any:
        return self._result("NotifyEVChargingSchedule")(status="Accepted")

    def _result(self, action: str) -> Any:
        module: Any = self._call_result  # type: ignore[attr-defined]
        return getattr(module, action)


class CsmsV201(_Handlers, ChargePointV201):  # type: ignore[misc]
    """OCPP 2.0.1 CSMS."""


class CsmsV21(_Handlers, ChargePointV21):  # type: ignore[misc]
    """OCPP 2.1 CSMS."""


class Csms:
    """Start with ``async with Csms(...) as csms``; restart with stop()/start()."""

    def __init__(
        self,
        *,
        subprotocols: tuple[str, ...] | None = ("ocpp2.0.1",),
        boot_answer: tuple[str, int] = ("Accepted", 300),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.subprotocols = subprotocols
        self.tls = tls
        self.boot_answer = boot_answer
        self.fail_transaction_events = False
        #: answer the WebSocket handshake with this HTTP status (e.g. 401) instead
        self.refuse_with: HTTPStatus | None = None
        #: idToken -> AuthorizationStatus the CSMS answers (Invalid otherwise)
        self.authorize_answers: dict[str, str] = {}
        #: NotifyEVChargingNeedsResponse.status (K15)
        self.charging_needs_answer = "Accepted"
        self.frames: list[tuple[str, Any]] = []
        self.requests: list[Request] = []
        self.boots = 0
        self.port = 0
        self.cp: Any = None
        self.ws: ServerConnection | None = None
        self._server: Server | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Csms:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        protocols = [Subprotocol(p) for p in self.subprotocols] if self.subprotocols else None
        self._server = await serve(
            self._session,
            "127.0.0.1",
            self.port,
            subprotocols=protocols,
            process_request=self._record,
            ssl=self.tls,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cp = self.ws = None

    def _record(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        self._changed.set()
        if self.refuse_with is not None:
            return connection.respond(self.refuse_with, "refused by the test CSMS\n")
        return None

    def record(self, direction: str, frame: Any) -> None:
        self.frames.append((direction, frame))
        self._changed.set()

    async def _session(self, ws: ServerConnection) -> None:
        cls = CsmsV21 if ws.subprotocol == "ocpp2.1" else CsmsV201
        cp = cls("station", _Recorder(ws, self), response_timeout=5)
        cp.csms = self
        self.cp, self.ws = cp, ws
        with contextlib.suppress(ConnectionClosed):
            await cp.start()

    # ------------------------------------------------------------- helpers
    def received(self, action: str | None = None) -> list[Any]:
        """CALLs the station sent, in order."""
        return [
            f
            for d, f in self.frames
            if d == "in"
            and isinstance(f, list)
            and f[0] == 2
            and (action is None or f[2] == action)
        ]

    async def until(self, condition: Callable[[], object], within_s: float = 5.0) -> None:
        """Wait until ``condition()`` holds; it is re-checked after each frame or request."""
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def raw_call(self, text: str, unique_id: str) -> list[Any]:
        """Send ``text`` as is; return the station's answer carrying ``unique_id``."""
        assert self.ws is not None
        self.record("out", text)
        await self.ws.send(text)

        def answer() -> list[Any] | None:
            return next(
                (
                    f
                    for d, f in self.frames
                    if d == "in" and isinstance(f, list) and f[0] in (3, 4) and f[1] == unique_id
                ),
                None,
            )

        await self.until(answer)
        result = answer()
        assert result is not None
        return result
