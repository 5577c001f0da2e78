"""Functional blocks C and D: authorization, the cache and the local list (sans-I/O).

Theory of operation: :meth:`AuthorizationBlock.authorize` numbers each request
(``ref``) and answers it with an
:class:`~chargepoint.ocpp.outbox.AuthorizationDone` action -- at once when
authorization is disabled, when the station is offline (the local list, the
cache and the offline policy decide, C12/C15) or when LocalPreAuthorize finds
the token accepted locally (C13/C14); otherwise once the CSMS answers the
Authorize (C01), or by the offline policy when it does not.  A remote start
that needs authorization (F02, AuthorizeRemoteStart) goes the same way and is
delivered to the runtime only when accepted.

The data structures and the offline policy are :mod:`chargepoint.ocpp.authorization`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargepoint.errors import RemoteProtocolError
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.authorization import (
    AuthCache,
    AuthorizationResult,
    LocalList,
    decide_locally,
)
from chargepoint.ocpp.outbox import (
    AuthorizationDone,
    Block,
    DeliverCommand,
    Handler,
    Outbox,
    StoreState,
    parse_timestamp,
)
from chargepoint.ocpp.queue import QueuedMessage
from chargepoint.ocpp.rpc import Call, JsonObject
from chargepoint.ocpp.station_io import IdToken, RemoteStart

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _PendingAuthorization:
    token: IdToken
    #: F01/F02 with AuthorizeRemoteStart: what to deliver once the token is accepted
    remote_start: RemoteStart | None = None


class AuthorizationBlock(Block):
    """Authorize (C01), the authorization cache (C10-C12) and the local list (D01/D02)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        cache_state: Mapping[str, Any] | None,
        local_list_state: Mapping[str, Any] | None,
    ) -> None:
        self._outbox = outbox
        self._model = outbox.model
        self._auth_cache = AuthCache(cache_state)
        self._local_list = LocalList(local_list_state)
        self._authorizations: dict[int, _PendingAuthorization] = {}
        self._next_ref = 1
        outbox.update(dm.LOCAL_AUTH_LIST, dm.ENTRIES, str(len(self._local_list)))

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "ClearCache": self._on_clear_cache,
            "SendLocalList": self._on_send_local_list,
            "GetLocalListVersion": self._on_get_local_list_version,
        }

    # ------------------------------------------------------------ requests
    def authorize(self, now: float, token: IdToken) -> int:
        """C01: authorize ``token``; the answer comes as :class:`AuthorizationDone`
        with the returned ``ref`` (possibly among the actions of this very call)."""
        return self._start(now, _PendingAuthorization(token))

    def authorize_remote_start(self, now: float, command: RemoteStart) -> None:
        """F02: deliver ``command`` to the runtime once its idToken is accepted."""
        self._start(now, _PendingAuthorization(command.id_token, command))

    def _start(self, now: float, pending: _PendingAuthorization) -> int:
        ref, self._next_ref = self._next_ref, self._next_ref + 1
        self._authorizations[ref] = pending
        if not self._model.bool_value(dm.AUTH, dm.ENABLED):
            # AuthCtrlr.Enabled = false: no authorization is needed.
            self._resolve(ref, AuthorizationResult("Accepted", "Disabled"))
            return ref
        if not self._outbox.online:
            self._authorize_offline(ref, now)
            return ref
        if self._model.bool_value(dm.AUTH, dm.LOCAL_PRE_AUTHORIZE):
            # C13/C14: a token the list or the cache accepts starts at once.
            local = self._local_decision(pending.token, now, accepted_only=True)
            if local is not None:
                self._resolve(ref, local)
                return ref
        payload: JsonObject = {
            "idToken": {"idToken": pending.token.id_token, "type": pending.token.kind}
        }

        def on_result(answer: JsonObject, at: float) -> None:
            self._on_authorize_response(ref, answer, at)

        def on_failure(at: float) -> None:
            self._authorize_offline(ref, at)  # C12/C15: decide without the CSMS

        self._outbox.send("Authorize", payload, on_result=on_result, on_failure=on_failure)
        return ref

    def _local_list_enabled(self) -> bool:
        return self._model.bool_value(dm.LOCAL_AUTH_LIST, dm.ENABLED)

    def _cache_enabled(self) -> bool:
        return self._model.bool_value(dm.AUTH_CACHE, dm.ENABLED)

    def _local_decision(
        self, token: IdToken, now: float, *, accepted_only: bool
    ) -> AuthorizationResult | None:
        result = decide_locally(
            token,
            local_list=self._local_list if self._local_list_enabled() else None,
            cache=self._auth_cache if self._cache_enabled() else None,
            utc=now + self._outbox.utc_offset_s,
            local_authorize_offline=True,
            offline_tx_for_unknown=False,
        )
        if result.source == "Refused" or (accepted_only and not result.accepted):
            return None
        return result

    def _authorize_offline(self, ref: int, now: float) -> None:
        pending = self._authorizations.get(ref)
        if pending is None:
            return
        result = decide_locally(
            pending.token,
            local_list=self._local_list if self._local_list_enabled() else None,
            cache=self._auth_cache if self._cache_enabled() else None,
            utc=now + self._outbox.utc_offset_s,
            local_authorize_offline=self._model.bool_value(dm.AUTH, dm.LOCAL_AUTHORIZE_OFFLINE),
            offline_tx_for_unknown=self._model.bool_value(dm.AUTH, dm.OFFLINE_TX_FOR_UNKNOWN_ID),
        )
        logger.info(
            "authorized %s without the CSMS: %s (%s)",
            pending.token.kind,
            result.status,
            result.source,
        )
        self._resolve(ref, result)

    def _resolve(self, ref: int, result: AuthorizationResult) -> None:
        pending = self._authorizations.pop(ref, None)
        if pending is None:
            return
        if pending.remote_start is None:
            self._outbox.emit(AuthorizationDone(ref, result))
        elif result.accepted:
            self._outbox.emit(DeliverCommand(pending.remote_start))
        else:
            logger.warning(
                "remote start %d not carried out: idToken %s (%s)",
                pending.remote_start.remote_start_id,
                result.status,
                result.source,
            )

    # ------------------------------------------------------------- answers
    def _remember(self, token: IdToken, info: JsonObject, now: float) -> None:
        """C10: keep the CSMS's IdTokenInfo; tokens of the local list are not cached."""
        if not self._cache_enabled() or self._local_list.lookup(token) is not None:
            return
        expiry = None
        if "cacheExpiryDateTime" in info:
            try:
                expiry = parse_timestamp(info["cacheExpiryDateTime"])
            except RemoteProtocolError as exc:
                logger.warning("ignoring cacheExpiryDateTime: %s", exc)
        lifetime = self._model.int_value(dm.AUTH_CACHE, dm.LIFE_TIME)
        self._auth_cache.store(token, info, now + self._outbox.utc_offset_s, lifetime, expiry)
        self._outbox.emit(StoreState("auth_cache", self._auth_cache.snapshot()))

    def _on_authorize_response(self, ref: int, payload: JsonObject, now: float) -> None:
        pending = self._authorizations.get(ref)
        if pending is None:
            return
        info = payload["idTokenInfo"]
        self._remember(pending.token, info, now)
        allowed = tuple(payload.get("allowedEnergyTransfer", ()))
        self._resolve(ref, AuthorizationResult(info["status"], "CSMS", info, allowed))

    def on_queued_result(self, message: QueuedMessage, result: JsonObject, now: float) -> None:
        """C10: a TransactionEventResponse's idTokenInfo updates the cache too."""
        info = result.get("idTokenInfo")
        if info is None:
            return
        token = message.payload.get("idToken")
        if token is not None:
            self._remember(IdToken(token["idToken"], token["type"]), info, now)

    # -------------------------------------------------------- CALL handlers
    def _on_clear_cache(self, call: Call, now: float, size: int) -> JsonObject:
        # C11: without an enabled authorization cache the request is Rejected.
        if self._model.bool_value(dm.AUTH_CACHE, dm.ENABLED):
            self._auth_cache.clear()
            self._outbox.emit(StoreState("auth_cache", self._auth_cache.snapshot()))
            return {"status": "Accepted"}
        return {"status": "Rejected"}

    def _on_send_local_list(self, call: Call, now: float, size: int) -> JsonObject:
        if not self._local_list_enabled():
            return {"status": "Failed", "statusInfo": {"reasonCode": "Disabled"}}
        entries = call.payload.get("localAuthorizationList", [])
        full = call.payload["updateType"] == "Full"
        status = self._local_list.update(call.payload["versionNumber"], full, entries)
        if status == "Accepted":
            self._outbox.emit(StoreState("local_list", self._local_list.snapshot()))
            self._outbox.update(dm.LOCAL_AUTH_LIST, dm.ENTRIES, str(len(self._local_list)))
        return {"status": status}  # D01

    def _on_get_local_list_version(self, call: Call, now: float, size: int) -> JsonObject:
        return {"versionNumber": self._local_list.version}  # D02

    # ------------------------------------------------ customer data (N09/N10)
    def customer_records(self, token: IdToken, utc: float) -> list[str]:
        """What the cache and the local list hold for ``token``, one line each."""
        who = f"{token.kind}:{token.id_token}"
        lines = []
        cached = self._auth_cache.peek(token, utc)
        if cached is not None:
            lines.append(f"authorization cache: {who} status {cached['info']['status']}")
        listed = self._local_list.lookup(token)
        if listed is not None:
            lines.append(f"local authorization list: {who} status {listed['status']}")
        return lines

    def forget_customer(self, token: IdToken) -> list[str]:
        """N10: remove ``token`` from the cache (the local list is the CSMS's own)."""
        if not self._auth_cache.remove(token):
            return []
        self._outbox.emit(StoreState("auth_cache", self._auth_cache.snapshot()))
        return [f"authorization cache: {token.kind}:{token.id_token}"]
