"""Simulated HomePlug Green PHY modem, power line and car, on the far side of a frame pipe.

The host side is the real driver, :class:`hal.plc.driver.PacketPlcLink`, over
a datagram socket that carries whole Ethernet frames (:func:`open_frame_pipe`,
:func:`open_udp_frame_pipe`, or an AF_PACKET socket on a veth end). On the far
side :class:`SimulatedPlcLine` plays:

* the charger's own modem: answers CM_SET_KEY, VS_SW_VER, VS_RS_DEV and
  VS_PL_LINK_STATUS sent to 00:B0:52:00:00:01; bridges every other frame onto
  the power line; passes each CM_MNBC_SOUND.IND up and adds one
  CM_ATTEN_PROFILE.IND with the attenuation it "measured";
* the power line: per-frame loss, latency and jitter (seeded, reproducible);
* the car's SLAC stack (:class:`SimulatedCar`), which behaves like a real EV:
  broadcasts CM_SLAC_PARM.REQ, collects the CNFs for TT_match_response, sends
  3 CM_START_ATTEN_CHAR.IND and the sounds TP_EV_batch_msg_interval apart,
  answers every CM_ATTEN_CHAR.IND, picks the EVSE with the lowest mean
  attenuation below its threshold, sends CM_SLAC_MATCH.REQ (with retries),
  checks that the NID belongs to the NMK, and joins the AVLN after a delay. It
  restarts up to C_conn_max_match times and can be told to give up part-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from chargepoint.slac import (
    BROADCAST_MAC,
    NUM_GROUPS,
    AttenCharInd,
    AttenCharRsp,
    AttenProfileInd,
    MnbcSoundInd,
    SlacMatchCnf,
    SlacMatchReq,
    SlacParmCnf,
    SlacParmReq,
    StartAttenCharInd,
    ValidateCnf,
    ValidateReq,
    ValidateResult,
    format_mac,
    nid_from_nmk,
)
from hal.plc.driver import MAX_FRAME, PACKET_OUTGOING
from hal.plc.mme import (
    LOCAL_MODEM_MAC,
    Dropped,
    Message,
    Mme,
    SetKeyCnf,
    SetKeyReq,
    SetKeyResult,
    VsPlLinkStatusCnf,
    VsPlLinkStatusReq,
    VsRsDevCnf,
    VsRsDevReq,
    VsSwVerCnf,
    VsSwVerReq,
    decode_frame,
    encode_frame,
    message_name,
)

_log = logging.getLogger(__name__)

_PIPE_BUFFER = 1 << 20


def open_frame_pipe() -> tuple[socket.socket, socket.socket]:
    """A connected pair of non-blocking sockets, one frame per message: (host end, far end).

    SOCK_SEQPACKET keeps message boundaries like a datagram socket and, unlike
    one, tells each end when the other closed.
    """
    host, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (host, far):
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _PIPE_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _PIPE_BUFFER)
    return host, far


def open_udp_frame_pipe() -> tuple[socket.socket, socket.socket]:
    """The same over UDP on 127.0.0.1 (two connected sockets): (host end, far end)."""
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        host.bind(("127.0.0.1", 0))
        far.bind(("127.0.0.1", 0))
        host.connect(far.getsockname())
        far.connect(host.getsockname())
    except OSError:
        host.close()
        far.close()
        raise
    host.setblocking(False)
    far.setblocking(False)
    return host, far


@dataclass(frozen=True, slots=True)
class PlcChannel:
    """The power line between the two modems."""

    loss: float = 0.0  # probability that one frame is lost (each direction, each frame)
    delay_s: float = 0.001  # one-way latency
    jitter_s: float = 0.0  # extra uniform 0..jitter_s (may reorder frames)
    attenuation_db: float = 22.0  # mean attenuation car -> charger modem
    spread_db: float = 6.0  # variation across the 58 carrier groups
    noise_db: float = 1.5  # per-sound noise


@dataclass(frozen=True, slots=True)
class ModemBehaviour:
    """The charger's QCA modem."""

    answer_set_key: bool = True
    set_key_result: int = SetKeyResult.SUCCESS_QCA  # QCA firmware answers 1
    set_key_delay_s: float = 0.002
    answer_link_status: bool = True
    makes_profiles: bool = True  # False: like AR7420 adapters, no CM_ATTEN_PROFILE.IND
    profile_first: bool = False  # the order of sound and profile is not guaranteed
    version: str = "MAC-QCA7000-1.2.5.3207-00-20180809-CS (simulated)"
    device_class: int = 0x20


class CarStops(Enum):
    """Where a car that gives up stops for good."""

    NEVER = "never"
    AFTER_PARM = "after_parm"  # never sends CM_START_ATTEN_CHAR.IND
    AFTER_SOUNDS = "after_sounds"  # never answers CM_ATTEN_CHAR.IND
    AFTER_ATTEN_CHAR = "after_atten_char"  # answers it, never sends CM_SLAC_MATCH.REQ
    AFTER_MATCH = "after_match"  # gets CM_SLAC_MATCH.CNF, never joins


@dataclass(frozen=True, slots=True)
class CarBehaviour:
    """The car's SLAC stack (ISO 15118-3 EV side); timers in seconds."""

    mac: bytes = bytes.fromhex("02005afec001")
    run_id: bytes | None = None  # None: random per attempt (some cars use MAC + 00 00)
    start_on_plug: bool = True  # False: sleeps until woken (E/F step, :meth:`SimulatedCar.wake`)
    start_delay_s: float = 0.0  # plug / wake -> first CM_SLAC_PARM.REQ
    batch_interval_s: float = 0.02  # TP_EV_batch_msg_interval (20-50 ms)
    response_timeout_s: float = 0.2  # TT_match_response
    retries: int = 2  # C_EV_match_retry
    atten_results_s: float = 1.2  # TT_EV_atten_results
    matching_rate_s: float = 0.4  # TT_matching_rate: pause before the next attempt
    max_attempts: int = 3  # C_conn_max_match
    threshold_db: float = 40.0  # match an EVSE whose mean attenuation is below this
    join_delay_s: float = 0.05  # CNF -> the car's modem is in the AVLN (real: up to seconds)
    validate: bool = False  # send CM_VALIDATE.REQ before the match request
    stops: CarStops = CarStops.NEVER
    wait_full_atten_window: bool = False  # True: always wait TT_EV_atten_results


@dataclass
class CarOutcome:
    """What the car saw, for tests and the bench."""

    attempts: int = 0
    evse_mac: bytes | None = None
    nid: bytes | None = None
    nmk: bytes | None = None
    attenuation_db: float | None = None  # mean of the chosen EVSE's AAG
    num_sounds: int | None = None  # NumSounds in the chosen EVSE's ATTEN_CHAR.IND
    validate_result: int | None = None
    errors: list[str] = field(default_factory=list)


class _Abandon(Exception):  # noqa: N818 - control flow inside the car task
    pass


class SimulatedCar:
    """The car's SLAC stack on the far side of the power line."""

    def __init__(self, line: SimulatedPlcLine, behaviour: CarBehaviour) -> None:
        self._line = line
        self.behaviour = behaviour
        self.mac = behaviour.mac
        self.outcome = CarOutcome()
        self.matched = asyncio.Event()
        self.gave_up = asyncio.Event()
        self.joined_nmk: bytes | None = None  # the AVLN key the car's modem is in
        self.plugged = False
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Mme] = asyncio.Queue()
        self._run_id = b""

    # -- control -----------------------------------------------------------------
    def plug(self) -> None:
        """The car is plugged in (CP B): it starts SLAC unless it sleeps."""
        self.plugged = True
        self.outcome = CarOutcome()
        self.matched.clear()
        self.gave_up.clear()
        if self.behaviour.start_on_plug:
            self._start()

    def wake(self) -> None:
        """An E/F step woke the car: (re)start matching if it is not matched."""
        if self.plugged and not self.matched.is_set():
            self._start()

    def unplug(self) -> None:
        """Unplugged: stop SLAC and leave the AVLN."""
        self.plugged = False
        self.joined_nmk = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._drain()

    def leave(self) -> None:
        """The car's modem leaves the AVLN (as if the car ended the link)."""
        self.joined_nmk = None

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def deliver(self, frame: bytes) -> None:
        """A frame arrived over the power line."""
        if not self.plugged:
            return
        decoded = decode_frame(frame)
        if isinstance(decoded, Dropped):
            return
        if decoded.destination not in (self.mac, BROADCAST_MAC):
            return
        self._inbox.put_nowait(decoded)

    # -- the EV-side state machine ------------------------------------------------------
    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _drain(self) -> None:
        while not self._inbox.empty():
            self._inbox.get_nowait()

    def _send(self, destination: bytes, message: Message) -> None:
        self._line.car_transmit(encode_frame(destination, self.mac, message))

    async def _run(self) -> None:
        b = self.behaviour
        try:
            if b.start_delay_s:
                await asyncio.sleep(b.start_delay_s)
            for attempt in range(1, b.max_attempts + 1):
                self.outcome.attempts = attempt
                if await self._attempt():
                    self.matched.set()
                    return
                await asyncio.sleep(b.matching_rate_s)
        except _Abandon as exc:
            self.outcome.errors.append(f"gave up: {exc}")
        self.gave_up.set()  # [V2G3-A09-124/125]: the car stays unmatched
        self._task = None

    async def _next(self, until: float) -> Mme | None:
        """The next frame for the car before loop time ``until``; answers any
        CM_ATTEN_CHAR.IND of the current run on the way (also resends)."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = until - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    mme = await self._inbox.get()
            except TimeoutError:
                return None
            msg = mme.message
            if (
                isinstance(msg, AttenCharInd)
                and msg.run_id == self._run_id
                and msg.source_address == self.mac
                and self.behaviour.stops is not CarStops.AFTER_SOUNDS
            ):
                self._send(mme.source, AttenCharRsp(source_address=self.mac, run_id=self._run_id))
            return mme

    async def _attempt(self) -> bool:
        b = self.behaviour
        loop = asyncio.get_running_loop()
        rng = self._line.rng
        run_id = b.run_id or rng.randbytes(8)
        self._run_id = run_id
        self._drain()
        # 1. parameter exchange: collect every EVSE that answers within TT_match_response
        evses: dict[bytes, SlacParmCnf] = {}
        for _ in range(1 + b.retries):
            self._send(BROADCAST_MAC, SlacParmReq(run_id=run_id))
            until = loop.time() + b.response_timeout_s
            while (mme := await self._next(until)) is not None:
                msg = mme.message
                if isinstance(msg, SlacParmCnf) and msg.run_id == run_id:
                    evses[mme.source] = msg
            if evses:
                break
        if not evses:
            self.outcome.errors.append("no CM_SLAC_PARM.CNF")
            return False
        if b.stops is CarStops.AFTER_PARM:
            raise _Abandon("after CM_SLAC_PARM.CNF")
        first = next(iter(evses.values()))
        num_sounds = first.num_sounds or 10
        time_out = first.time_out
        # 2. sounding: 3 START_ATTEN_CHAR.IND, then the sounds, TP_EV_batch_msg_interval apart
        started = loop.time()
        start = StartAttenCharInd(
            num_sounds=num_sounds, time_out=time_out, forwarding_sta=self.mac, run_id=run_id
        )
        for _ in range(3):
            self._send(BROADCAST_MAC, start)
            await asyncio.sleep(b.batch_interval_s)
        for left in range(num_sounds - 1, -1, -1):
            self._send(
                BROADCAST_MAC, MnbcSoundInd(count=left, run_id=run_id, random=rng.randbytes(16))
            )
            await asyncio.sleep(b.batch_interval_s)
        # 3. the EVSEs' reports until TT_EV_atten_results (from the first START_ATTEN_CHAR)
        reports: dict[bytes, AttenCharInd] = {}
        until = started + b.atten_results_s
        while b.wait_full_atten_window or set(reports) != set(evses):
            mme = await self._next(until)
            if mme is None:
                break
            msg = mme.message
            if isinstance(msg, AttenCharInd) and msg.run_id == run_id:
                reports[mme.source] = msg
        if b.stops is CarStops.AFTER_SOUNDS:
            raise _Abandon("after the sounds")
        if not reports:
            self.outcome.errors.append("no CM_ATTEN_CHAR.IND")
            return False
        if b.stops is CarStops.AFTER_ATTEN_CHAR:
            raise _Abandon("after CM_ATTEN_CHAR.IND")
        evse_mac, report = min(reports.items(), key=lambda item: _mean(item[1].aag))
        attenuation = _mean(report.aag)
        self.outcome.attenuation_db = attenuation
        self.outcome.num_sounds = report.num_sounds
        if attenuation >= b.threshold_db:
            self.outcome.errors.append(f"attenuation {attenuation:.1f} dB too high")
            return False
        # 4. optional validation
        if b.validate:
            self._send(evse_mac, ValidateReq(result=ValidateResult.READY))
            until = loop.time() + b.response_timeout_s
            while (mme := await self._next(until)) is not None:
                if isinstance(mme.message, ValidateCnf) and mme.source == evse_mac:
                    self.outcome.validate_result = mme.message.result
                    break
        # 5. the match request, with retries
        confirmation: SlacMatchCnf | None = None
        request = SlacMatchReq(pev_mac=self.mac, evse_mac=evse_mac, run_id=run_id)
        for _ in range(1 + b.retries):
            self._send(evse_mac, request)
            until = loop.time() + b.response_timeout_s
            while (mme := await self._next(until)) is not None:
                msg = mme.message
                if (
                    isinstance(msg, SlacMatchCnf)
                    and mme.source == evse_mac
                    and msg.run_id == run_id
                    and msg.pev_mac == self.mac
                ):
                    confirmation = msg
                    break
            if confirmation is not None:
                break
        if confirmation is None:
            self.outcome.errors.append("no CM_SLAC_MATCH.CNF")
            return False
        if nid_from_nmk(confirmation.nmk) != confirmation.nid:
            self.outcome.errors.append("CM_SLAC_MATCH.CNF: the NID does not belong to the NMK")
            return False
        self.outcome.evse_mac = evse_mac
        self.outcome.nid = confirmation.nid
        self.outcome.nmk = confirmation.nmk
        if b.stops is CarStops.AFTER_MATCH:
            raise _Abandon("after CM_SLAC_MATCH.CNF")
        # 6. the car's modem joins the AVLN
        await asyncio.sleep(b.join_delay_s)
        self.joined_nmk = confirmation.nmk
        _log.debug("car %s joined NID %s", format_mac(self.mac), confirmation.nid.hex())
        return True


def _mean(values: tuple[int, ...]) -> float:
    return sum(values) / len(values) if values else math.inf


class SimulatedModem:
    """The charger's own modem: key, version, reset, link status, sound profiles."""

    def __init__(self, line: SimulatedPlcLine, behaviour: ModemBehaviour, mac: bytes) -> None:
        self._line = line
        self.behaviour = behaviour
        self.mac = mac
        self.nmk: bytes | None = None
        self.nid: bytes | None = None
        self.keys_set = 0
        self.resets = 0
        self._profile: list[float] = []

    def link_up(self, car: SimulatedCar) -> bool:
        return self.nmk is not None and car.joined_nmk == self.nmk

    def new_profile(self) -> None:
        """A fresh attenuation profile for the current plug-in."""
        ch = self._line.channel
        rng = self._line.rng
        phase = rng.uniform(0.0, 2 * math.pi)
        self._profile = [
            ch.attenuation_db + ch.spread_db * math.sin(phase + g / 7.0) for g in range(NUM_GROUPS)
        ]

    def handle_host(self, mme: Mme) -> None:
        """A frame from the host addressed to the modem."""
        b = self.behaviour
        host = mme.source
        msg = mme.message
        answer: Message | None = None
        delay_s = 0.0
        match msg:
            case SetKeyReq():
                if not b.answer_set_key:
                    return
                if SetKeyResult.ok(b.set_key_result):
                    self.nmk, self.nid = msg.new_key, msg.nid  # a new AVLN: the old link is gone
                    self.keys_set += 1
                answer = SetKeyCnf(result=b.set_key_result, your_nonce=msg.my_nonce)
                delay_s = b.set_key_delay_s
            case VsSwVerReq():
                answer = VsSwVerCnf(status=0, device_class=b.device_class, version=b.version)
            case VsRsDevReq():
                self.nmk = self.nid = None
                self.resets += 1
                answer = VsRsDevCnf(status=0)
            case VsPlLinkStatusReq():
                if not b.answer_link_status:
                    return
                up = self.link_up(self._line.car)
                answer = VsPlLinkStatusCnf(status=0, link_status=1 if up else 0)
            case _:
                _log.debug("simulated modem ignores %s", message_name(msg))
                return
        frame = encode_frame(host, self.mac, answer)
        if delay_s:
            self._line.loop().call_later(delay_s, self._line.to_host, frame)
        else:
            self._line.to_host(frame)

    def from_power_line(self, frame: bytes) -> None:
        """A frame from the car: bridge it to the host, and profile a sound."""
        decoded = decode_frame(frame)
        profile: bytes | None = None
        if (
            self.behaviour.makes_profiles
            and isinstance(decoded, Mme)
            and isinstance(decoded.message, MnbcSoundInd)
        ):
            rng = self._line.rng
            noise = self._line.channel.noise_db
            aag = tuple(
                min(255, max(0, round(base + rng.gauss(0.0, noise)))) for base in self._profile
            )
            profile = encode_frame(
                self._line.host_mac, self.mac, AttenProfileInd(pev_mac=decoded.source, aag=aag)
            )
        if profile is not None and self.behaviour.profile_first:
            self._line.to_host(profile)
        self._line.to_host(frame)
        if profile is not None and not self.behaviour.profile_first:
            self._line.to_host(profile)


class SimulatedPlcLine:
    """Far side of the frame pipe: the charger's modem, the power line and the car.

    ``sock`` is the far end of :func:`open_frame_pipe` (or of the UDP pipe, or an
    AF_PACKET socket on a veth end). :meth:`run` serves it until cancelled.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        channel: PlcChannel | None = None,
        modem: ModemBehaviour | None = None,
        car: CarBehaviour | None = None,
        modem_mac: bytes = bytes.fromhex("00b052be0001"),
        seed: int | None = None,
    ) -> None:
        self._sock = sock
        self.channel = channel or PlcChannel()
        self.rng = random.Random(seed)
        self.host_mac = BROADCAST_MAC  # learnt from the host's frames, like a bridge
        self.modem = SimulatedModem(self, modem or ModemBehaviour(), modem_mac)
        self.car = SimulatedCar(self, car or CarBehaviour())
        self.frames_from_host = 0
        self.frames_to_host = 0
        self.frames_lost = 0
        self.host_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- control ---------------------------------------------------------------------
    def plug(self) -> None:
        """Plug the car in: a new attenuation profile, and the car starts SLAC."""
        self.loop()
        self.modem.new_profile()
        self.car.plug()

    def unplug(self) -> None:
        self.car.unplug()

    async def run(self) -> None:
        loop = self.loop()
        sock = self._sock
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._on_readable)
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            await self.car.stop()
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    # -- transport ---------------------------------------------------------------------
    def to_host(self, frame: bytes) -> None:
        if self._closed:
            return
        try:
            self._sock.send(frame)
        except OSError as exc:  # the host end is gone or its buffer is full
            self.host_errors += 1
            _log.debug("simulated line: cannot reach the host: %s", exc)
            return
        self.frames_to_host += 1

    def car_transmit(self, frame: bytes) -> None:
        """The car put a frame on the power line."""
        self._over_power_line(frame, self.modem.from_power_line)

    def _over_power_line(self, frame: bytes, deliver: Callable[[bytes], None]) -> None:
        ch = self.channel
        if ch.loss and self.rng.random() < ch.loss:
            self.frames_lost += 1
            return
        delay_s = ch.delay_s + (self.rng.uniform(0.0, ch.jitter_s) if ch.jitter_s else 0.0)
        self.loop().call_later(delay_s, deliver, frame)

    def _on_readable(self) -> None:
        for _ in range(64):
            try:
                frame, address = self._sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _log.debug("simulated line: receive failed: %s", exc)
                return
            if not frame:
                return
            if isinstance(address, tuple) and len(address) > 2 and address[2] == PACKET_OUTGOING:
                continue
            self._from_host(frame)

    def _from_host(self, frame: bytes) -> None:
        decoded = decode_frame(frame)
        if isinstance(decoded, Dropped):
            return
        self.frames_from_host += 1
        self.host_mac = decoded.source
        if decoded.destination in (LOCAL_MODEM_MAC, self.modem.mac):
            self.modem.handle_host(decoded)
        else:
            self._over_power_line(frame, self.car.deliver)
