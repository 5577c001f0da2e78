"""A card tap on an EVSE's token reader becomes an authorisation, or the end of one.

Theory of operation, per EVSE (OCPP 2.0.1 C01, C09, E03, E07):

* No authorisation held: the card's UID (idToken type ISO14443) is authorised --
  with the CSMS (Authorize), or offline by the local list, the cache and the
  offline policy, all inside :meth:`OcppClient.authorize` (C01, C12-C15). Accepted:
  the OCPP side hears of it at once (TxStartPoint Authorized may start the
  transaction, E03), and the EVSE may offer energy as soon as an EV is plugged in;
  no EV within TxCtrlr.EVConnectionTimeOut (asked of the sink at each
  authorisation; 0: no limit; without a CSMS ``ev_connection_timeout_s``) ends the
  authorisation (E03, reason Timeout). Refused: a log line, nothing else (C01: no
  transaction).
* An authorisation held: the same card stops the charge without asking anyone
  (E07); another card is authorised to learn its group, and stops the charge when
  its groupIdToken is the one of the card that started it (C09). Any other card
  is refused with a log line (TC_C_04: the charge goes on).
* The EV leaving ends the authorisation (the transaction ends by EVConnected); so
  does the CSMS refusing the idToken later (E05 Deauthorize: the sink no longer
  reports it active), after which a card authorises afresh.

:func:`decide_tap` and :func:`stops_by_group` are the rules, pure; the class only
sequences reader, authorisation and runner. Taps are handled one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from chargepoint.adapters.evse_runner import EvseRunner, Published
from chargepoint.evse.actions import StateChanged
from chargepoint.evse.events import StartCharging, StopCharging
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.ocpp.authorization import AuthorizationResult
from chargepoint.ocpp.station_io import IdToken, StoppedReason
from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.token_reader import TokenReader

log = logging.getLogger(__name__)

ID_TOKEN_TYPE = "ISO14443"  # IdTokenEnumType of a card UID
EV_CONNECTION_TIMEOUT_S = 60.0  # TxCtrlr.EVConnectionTimeOut's default
REOPEN_S = 5.0  # a reader that failed is opened again after this long
MAX_READ_FAILURES = 3  # failed reads in a row before the reader is reopened
RETRY_READ_S = 0.2

Authorize = Callable[[IdToken], Awaitable[AuthorizationResult]]


class TokenSink(Protocol):
    """Who must hear of local authorisations besides the EVSE (the OCPP bridge)."""

    def active_token(self, evse_id: int) -> IdToken | None:
        """The idToken the current authorisation was given to (e.g. a remote start)."""

    def token_authorized(self, evse_id: int, token: IdToken) -> None: ...

    def token_ended(self, evse_id: int, reason: StoppedReason) -> None: ...

    def ev_connection_timeout_s(self, evse_id: int) -> float | None:
        """TxCtrlr.EVConnectionTimeOut now (0: no limit), ``None`` if not known."""


async def accept_every_token(token: IdToken) -> AuthorizationResult:
    """No CSMS configured: the reader is a start/stop key, any card will do."""
    return AuthorizationResult("Accepted", "NoCsms")


class Tap(Enum):
    AUTHORIZE = "authorize"  # nothing held: ask whether this card may charge
    STOP = "stop"  # the card that started it: stop at once (E07)
    ASK_GROUP = "ask-group"  # another card: authorise to learn its group (C09)


def same_token(a: IdToken, b: IdToken) -> bool:
    """IdTokens compare case-insensitively, by value and type (OCPP 2.0.1 §2 IdTokenType)."""
    return a.id_token.casefold() == b.id_token.casefold() and a.kind.casefold() == b.kind.casefold()


def decide_tap(held: IdToken | None, tapped: IdToken) -> Tap:
    if held is None:
        return Tap.AUTHORIZE
    return Tap.STOP if same_token(held, tapped) else Tap.ASK_GROUP


def group_of(result: AuthorizationResult) -> IdToken | None:
    info = result.id_token_info or {}
    group = info.get("groupIdToken")
    if not isinstance(group, dict) or "idToken" not in group or "type" not in group:
        return None
    return IdToken(str(group["idToken"]), str(group["type"]))


def stops_by_group(held_group: IdToken | None, result: AuthorizationResult) -> bool:
    """C09: an accepted card of the same group as the starting card stops the charge."""
    tapped_group = group_of(result)
    return (
        result.accepted
        and held_group is not None
        and tapped_group is not None
        and same_token(held_group, tapped_group)
    )


@dataclass
class _Grant:
    token: IdToken
    group: IdToken | None
    #: waiting for an EV until then (inf: no limit; None: one is plugged in)
    deadline: float | None


class TokenAuthorizer:
    """Reads ``reader`` for EVSE ``runner.evse_id``; see the module docstring."""

    def __init__(
        self,
        runner: EvseRunner,
        reader: TokenReader,
        authorize: Authorize = accept_every_token,
        *,
        sink: TokenSink | None = None,
        ev_connection_timeout_s: float = EV_CONNECTION_TIMEOUT_S,
        reopen_s: float = REOPEN_S,
    ) -> None:
        self.runner = runner
        self.reader = reader
        self.authorize = authorize
        self.sink = sink
        self.ev_connection_timeout_s = ev_connection_timeout_s
        self.reopen_s = reopen_s
        self.taps = 0  # cards read, for status and tests
        self._grant: _Grant | None = None
        self._changed = asyncio.Event()

    @property
    def evse_id(self) -> int:
        return self.runner.evse_id

    def listener(self, evse_id: int, item: Published) -> None:
        """Runner notices: a plug-in starts a waiting authorisation, an unplug ends it."""
        if evse_id == self.evse_id and isinstance(item, StateChanged):
            grant = self._grant
            if item.new is EvseState.IDLE and grant is not None and grant.deadline is None:
                self._grant = None  # the EV left: the transaction ends by EVConnected
            self._changed.set()

    async def run(self) -> None:
        """Read cards and follow the plug until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read_loop())
            tg.create_task(self._plug_loop())

    # ------------------------------------------------------------------ taps
    async def tap(self, token: IdToken) -> None:
        """One card presented (what the reader loop calls for each card)."""
        self.taps += 1
        self._drop_withdrawn()
        held = self._grant.token if self._grant is not None else self._sink_token()
        match decide_tap(held, token):
            case Tap.STOP:
                log.info("evse %d: stopped by the card that started it", self.evse_id)
                await self._stop(StoppedReason.LOCAL)  # E07
            case Tap.ASK_GROUP:
                result = await self.authorize(token)
                group = self._grant.group if self._grant is not None else None
                if stops_by_group(group, result):
                    log.info("evse %d: stopped by a card of the same group", self.evse_id)
                    await self._stop(StoppedReason.LOCAL)  # C09
                else:
                    log.warning(
                        "evse %d: card %s refused: the charge belongs to another card",
                        self.evse_id,
                        _masked(token),
                    )
            case Tap.AUTHORIZE:
                result = await self.authorize(token)
                if result.accepted:
                    await self._start(token, group_of(result))
                else:
                    log.warning(
                        "evse %d: card %s refused: %s (%s)",
                        self.evse_id,
                        _masked(token),
                        result.status,
                        result.source,
                    )

    def _drop_withdrawn(self) -> None:
        """E05: the CSMS deauthorized the card (the sink no longer holds it): forget
        the grant, so that no energy follows a plug-in and a card starts afresh."""
        if self._grant is not None and self.sink is not None and self._sink_token() is None:
            log.info("evse %d: authorisation withdrawn by the CSMS", self.evse_id)
            self._grant = None

    def _sink_token(self) -> IdToken | None:
        return self.sink.active_token(self.evse_id) if self.sink is not None else None

    def _timeout_s(self) -> float:
        """E03: TxCtrlr.EVConnectionTimeOut from the sink (0: none), else the default."""
        live = self.sink.ev_connection_timeout_s(self.evse_id) if self.sink is not None else None
        if live is None:
            return self.ev_connection_timeout_s
        return live if live > 0 else math.inf

    async def _start(self, token: IdToken, group: IdToken | None) -> None:
        loop = asyncio.get_running_loop()
        self._grant = _Grant(token, group, loop.time() + self._timeout_s())
        log.info("evse %d: card %s authorised", self.evse_id, _masked(token))
        if self.sink is not None:
            self.sink.token_authorized(self.evse_id, token)
        await self._follow_plug()
        self._changed.set()  # the plug loop now watches the deadline

    async def _stop(self, reason: StoppedReason) -> None:
        grant, self._grant = self._grant, None
        if grant is None or grant.deadline is None:  # the EVSE was told to offer energy
            await self.runner.submit(StopCharging("token"))
        if self.sink is not None:
            self.sink.token_ended(self.evse_id, reason)

    # ------------------------------------------------------------------ the plug
    async def _follow_plug(self) -> None:
        """Energy once an EV is there (E03); the authorisation lapses if none comes."""
        self._drop_withdrawn()
        grant = self._grant
        if grant is None or grant.deadline is None:
            return
        if self.runner.controller.state is not EvseState.IDLE:
            grant.deadline = None
            await self.runner.submit(StartCharging("token"))
        elif asyncio.get_running_loop().time() >= grant.deadline:
            log.info("evse %d: no EV plugged in: authorisation lapsed", self.evse_id)
            self._grant = None
            if self.sink is not None:
                self.sink.token_ended(self.evse_id, StoppedReason.TIMEOUT)

    async def _plug_loop(self) -> None:
        while True:
            self._changed.clear()
            await self._follow_plug()
            grant = self._grant
            deadline = grant.deadline if grant is not None else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(
                    deadline if deadline is not None and math.isfinite(deadline) else None
                ):
                    await self._changed.wait()

    # ------------------------------------------------------------------ the reader
    async def _read_loop(self) -> None:
        failed_before = False
        try:
            while True:
                try:
                    await self.reader.open()
                except HalInitError as exc:
                    level = logging.DEBUG if failed_before else logging.ERROR
                    log.log(level, "evse %d: token reader: %s", self.evse_id, exc)
                    failed_before = True
                    await asyncio.sleep(self.reopen_s)
                    continue
                failed_before = False
                await self._read_cards()
                await self.reader.close()
                await asyncio.sleep(self.reopen_s)
        finally:
            await self.reader.close()

    async def _read_cards(self) -> None:
        """Until the reader fails ``MAX_READ_FAILURES`` times in a row (one lost frame
        on a noisy line is no reason to reopen it and miss a tap meanwhile)."""
        failures = 0
        while failures < MAX_READ_FAILURES:
            try:
                card = await self.reader.read_card()
            except (HalOperationError, HalTimeoutError) as exc:
                failures += 1
                log.warning("evse %d: token reader: %s", self.evse_id, exc)
                await asyncio.sleep(RETRY_READ_S)
                continue
            failures = 0
            await self.tap(IdToken(card.id_token, ID_TOKEN_TYPE))
        log.warning("evse %d: token reader keeps failing: reopening it", self.evse_id)


def _masked(token: IdToken) -> str:
    """Enough of a UID to tell cards apart in a log, not enough to clone one."""
    text = token.id_token
    return text[:4] + "..." if len(text) > 4 else text
