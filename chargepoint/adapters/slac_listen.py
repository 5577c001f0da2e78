"""asyncio shell around the SLAC matcher, and ``chargepoint slac listen``.

:class:`SlacLinkRunner` drives one :class:`chargepoint.slac.matcher.SlacMatcher`
with one :class:`hal.plc.link.PlcLink`: received MMEs and posted events go in,
``handle_timer`` runs at ``next_deadline``, and the actions are carried out in
order (frames sent inline; key setting and link-status polls as child tasks
whose results come back as events). Pilot requests and notices are handed to
``on_action`` for the service to act on; the runner itself never touches the
control pilot.

:func:`slac_listen` is the commissioning tool: one SECC-side matching on a real
interface with the real driver; the local modem answers the key setting, a car
or a test peer does the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO, cast, get_args

from chargepoint.iec61851.cp_state import CpState
from chargepoint.slac import SlacMessage, format_mac, nid_from_nmk
from chargepoint.slac.matcher import (
    Action,
    CpChanged,
    Event,
    KeySetResult,
    LinkReady,
    LinkStatusResult,
    MatchingFailed,
    MatchingStarted,
    MmeReceived,
    RequestLinkStatus,
    SendMme,
    SetKey,
    SlacMatcher,
    SlacSettings,
)
from hal.errors import HalError, HalInitError, HalOperationError, HalTimeoutError
from hal.plc.link import PlcLink

_log = logging.getLogger(__name__)

_SLAC_TYPES: tuple[type, ...] = get_args(SlacMessage)


class SlacLinkRunner:
    """Carries out a :class:`SlacMatcher`'s actions on a :class:`PlcLink`."""

    def __init__(
        self,
        matcher: SlacMatcher,
        link: PlcLink,
        *,
        on_action: Callable[[Action], None] | None = None,
        set_key_timeout_s: float = 1.0,
        link_status_timeout_s: float = 0.5,
    ) -> None:
        self.matcher = matcher
        self.link = link
        self._on_action = on_action
        self._set_key_timeout_s = set_key_timeout_s
        self._link_status_timeout_s = link_status_timeout_s
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: asyncio.TaskGroup | None = None

    def post(self, event: Event) -> None:
        """Hand an event (e.g. ``CpChanged``) to the matcher from the same loop."""
        self._events.put_nowait(event)

    async def run(self) -> None:
        """Run until cancelled. The link must be open; a failing link raises
        :class:`hal.errors.HalOperationError`."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._receive_loop())
                await self._apply(self.matcher.start(loop.time()))
                while True:
                    deadline = self.matcher.next_deadline()
                    try:
                        async with asyncio.timeout_at(deadline):
                            event = await self._events.get()
                    except TimeoutError:
                        await self._apply(self.matcher.handle_timer(loop.time()))
                        continue
                    await self._apply(self.matcher.handle(event, loop.time()))
        except* HalOperationError as group:
            raise group.exceptions[0] from None
        finally:
            self._tasks = None

    async def _receive_loop(self) -> None:
        while True:
            mme = await self.link.receive()
            if isinstance(mme.message, _SLAC_TYPES):
                message = cast(SlacMessage, mme.message)
                self._events.put_nowait(MmeReceived(mme.source, message))

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SendMme(destination=destination, message=message):
                    try:
                        await self.link.send(destination, message)
                    except HalOperationError as exc:
                        # a lost frame: the matcher's timers and the car's retries cover it
                        _log.warning("SLAC: %s", exc)
                case SetKey():
                    self._spawn(self._set_key(action))
                case RequestLinkStatus(token=token):
                    self._spawn(self._link_status(token))
                case _:
                    pass
            if self._on_action is not None:
                self._on_action(action)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tasks is not None, "actions are only carried out inside run()"
        self._tasks.create_task(coro)

    async def _set_key(self, action: SetKey) -> None:
        try:
            await self.link.set_key(action.nmk, action.nid, timeout_s=self._set_key_timeout_s)
        except HalError as exc:
            self.post(KeySetResult(action.nmk, ok=False, detail=str(exc)))
            return
        self.post(KeySetResult(action.nmk, ok=True))

    async def _link_status(self, token: int) -> None:
        try:
            up = await self.link.link_status(timeout_s=self._link_status_timeout_s)
        except HalError as exc:
            _log.debug("link status: %s", exc)
            up = False
        self.post(LinkStatusResult(token, up))


async def slac_listen(
    interface: str,
    *,
    timeout_s: float = 60.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
    link: PlcLink | None = None,
    settings: SlacSettings | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> int:
    """One SECC-side matching on ``interface``: 0 matched, 1 no match, 2 link unusable."""
    out = out or sys.stdout
    err = err or sys.stderr
    if link is None:
        from hal.plc.driver import PacketPlcLink  # noqa: PLC0415 - needs Linux AF_PACKET

        link = PacketPlcLink(interface)
    try:
        await link.open()
    except HalInitError as exc:
        print(f"error: {exc}", file=err)
        return 2
    try:
        return await _listen(
            link,
            timeout_s=timeout_s,
            out=out,
            err=err,
            settings=settings,
            random_bytes=random_bytes,
        )
    except HalOperationError as exc:
        print(f"error: {exc}", file=err)
        return 2
    finally:
        await link.close()


async def _listen(
    link: PlcLink,
    *,
    timeout_s: float,
    out: TextIO,
    err: TextIO,
    settings: SlacSettings | None,
    random_bytes: Callable[[int], bytes],
) -> int:
    try:
        version = await link.read_version(timeout_s=0.5)
    except HalTimeoutError:
        print(f"modem on {link.interface}: no answer to VS_SW_VER (no QCA modem?)", file=out)
    else:
        print(f"modem on {link.interface}: {version.version}", file=out)
    matcher = SlacMatcher(
        settings or SlacSettings(slac_init_s=timeout_s),
        host_mac=link.host_mac,
        random_bytes=random_bytes,
    )
    done: asyncio.Future[LinkReady | MatchingFailed] = asyncio.get_running_loop().create_future()

    def on_action(action: Action) -> None:
        match action:
            case MatchingStarted(ev_mac=ev_mac, run_id=run_id):
                print(f"car {format_mac(ev_mac)} started matching (RunID {run_id.hex()})", file=out)
            case LinkReady() | MatchingFailed(final=True) if not done.done():
                done.set_result(action)
            case _:
                pass

    runner = SlacLinkRunner(matcher, link, on_action=on_action)
    print(f"listening on {link.interface} for {timeout_s:g} s ...", file=out, flush=True)
    task = asyncio.create_task(runner.run())
    runner.post(CpChanged(CpState.B))  # the car (or test peer) is plugged in
    try:
        waiting: set[asyncio.Future[Any]] = {done, task}
        await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # the link failed: raises HalOperationError
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    result = done.result() if done.done() else None
    await _leave(link, random_bytes)
    if isinstance(result, LinkReady):
        attenuation = "-" if result.attenuation_db is None else f"{result.attenuation_db:.1f} dB"
        print(f"EV MAC:      {format_mac(result.ev_mac)}", file=out)
        print(f"NID:         {result.nid.hex()}", file=out)
        print(f"attenuation: {attenuation} (average of {result.num_sounds} sounds)", file=out)
        print(f"match time:  {result.match_time_s:.3f} s", file=out)
        return 0
    reason = result.reason if result is not None else f"no match within {timeout_s:g} s"
    print(f"no match: {reason}", file=err)
    return 1


async def _leave(link: PlcLink, random_bytes: Callable[[int], bytes]) -> None:
    """Leave the logical network with a fresh key [V2G3-M09-17] (best effort)."""
    nmk = random_bytes(16)
    try:
        await link.set_key(nmk, nid_from_nmk(nmk), timeout_s=1.0)
    except HalError as exc:
        _log.warning("could not leave the logical network: %s", exc)
