"""Host-side driver for a bidirectional DC power module on CAN.

Implements :class:`hal.power_stage.PowerStage` for the protocol in
``docs/power-stage-can.md``.

Receiving happens on the event loop thread without a reader task of ours.
Buses without a file descriptor (e.g. ``virtual``) use :class:`can.Notifier`
bound to the loop; its reader thread hands each frame over to the loop. Buses
with one (``socketcan``, ``slcan``) are watched with ``loop.add_reader`` the
way ``can.Notifier`` does it, except that a failing bus (interface down,
adapter unplugged, slcan peer gone) removes the reader once and fails the
waiters with :class:`HalOperationError`; ``can.Notifier`` would re-raise the
same error on every loop wake-up and spin the CPU.

The host heartbeat is sent with :meth:`can.BusABC.send_periodic`, so it keeps
its period however busy the loop is (SocketCAN's broadcast manager even sends
it from the kernel). That proves the host's CAN link is alive, not that its
control loop is; the controller must watch its own loop. If the bus fails,
python-can's periodic thread logs the error and stops, and the module then
switches off on its 500 ms watchdog.

Bus ownership: pass a :class:`can.BusABC` and the driver only borrows it --
:meth:`close` stops the driver's notifier and heartbeat but never shuts the
bus down. Pass a zero-argument factory instead and the driver creates the bus
in :meth:`open` and shuts it down in :meth:`close`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import can

from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.power_can.codec import (
    MODE_CODES,
    MODES_BY_CODE,
    MODULE_TO_HOST,
    PROTOCOL_VERSION,
    CodecError,
    check_node_id,
    faults_from_bits,
    power_module_frames,
    split_arbitration_id,
)
from hal.power_stage import PowerMode, PowerStageCapabilities, PowerStageFault, PowerStageStatus

if TYPE_CHECKING:
    from hal.power_can.codec import Frame

_log = logging.getLogger(__name__)

BusFactory = Callable[[], can.BusABC]

# How long python-can's reader thread blocks in one recv(); bounds how long
# Notifier.stop() can hold the event loop on close.
_NOTIFIER_POLL_S = 0.05
# The module trips its watchdog after 500 ms without a heartbeat.
MODULE_HEARTBEAT_TIMEOUT_S = 0.5


class _Receiver(can.Listener):
    """Forwards python-can callbacks (already on the loop thread) to the driver."""

    def __init__(self, driver: CanPowerStage) -> None:
        self._driver = driver

    def on_message_received(self, msg: can.Message) -> None:
        self._driver._on_message(msg)

    def on_error(self, exc: Exception) -> None:
        self._driver._on_bus_error(exc)


class _FdReader:
    """Reads a bus that has a file descriptor from the event loop.

    Same mechanism as ``can.Notifier`` with a loop, but a bus error removes
    the reader and is reported once instead of on every wake-up.
    """

    def __init__(
        self, bus: can.BusABC, fd: int, loop: asyncio.AbstractEventLoop, receiver: _Receiver
    ) -> None:
        self._bus = bus
        self._fd: int | None = fd
        self._loop = loop
        self._receiver = receiver
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            msg = self._bus.recv(0)
        except can.CanError as exc:
            self.stop()
            self._receiver.on_error(exc)
            return
        if msg is not None:
            self._receiver.on_message_received(msg)

    def stop(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None


class CanPowerStage:
    """:class:`hal.power_stage.PowerStage` over CAN (see module docstring)."""

    def __init__(
        self,
        bus: can.BusABC | BusFactory,
        node_id: int,
        *,
        off_current_threshold_a: float = 1.0,
        off_timeout_s: float = 1.0,
        heartbeat_period_s: float = 0.1,
        response_timeout_s: float = 0.5,
        status_timeout_s: float = 0.5,
        open_attempts: int = 3,
    ) -> None:
        check_node_id(node_id)
        for name, value in (
            ("off_current_threshold_a", off_current_threshold_a),
            ("off_timeout_s", off_timeout_s),
            ("heartbeat_period_s", heartbeat_period_s),
            ("response_timeout_s", response_timeout_s),
            ("status_timeout_s", status_timeout_s),
        ):
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if open_attempts < 1:
            raise ValueError("open_attempts must be >= 1")
        if heartbeat_period_s > MODULE_HEARTBEAT_TIMEOUT_S / 2:
            _log.warning(
                "heartbeat period %.3f s is more than half the module's %.1f s watchdog; "
                "the module will switch off",
                heartbeat_period_s,
                MODULE_HEARTBEAT_TIMEOUT_S,
            )
        if isinstance(bus, can.BusABC):
            self._bus: can.BusABC | None = bus
            self._bus_factory: BusFactory | None = None
        else:
            self._bus = None
            self._bus_factory = bus
        self.node_id = node_id
        self.off_current_threshold_a = off_current_threshold_a
        self.off_timeout_s = off_timeout_s
        self.heartbeat_period_s = heartbeat_period_s
        self.response_timeout_s = response_timeout_s
        self.status_timeout_s = status_timeout_s
        self.open_attempts = open_attempts
        self._frames = power_module_frames(node_id)
        self._notifier: can.Notifier | _FdReader | None = None
        self._heartbeat: can.broadcastmanager.CyclicSendTaskABC | None = None
        self._open = False
        self._capabilities: PowerStageCapabilities | None = None
        self._caps_export: dict[str, float] | None = None
        self._caps_import: dict[str, float] | None = None
        self._caps_waiter: asyncio.Future[None] | None = None
        self._status_waiters: list[asyncio.Future[PowerStageStatus]] = []
        self._last_status: PowerStageStatus | None = None
        self._malformed_frames = 0
        self._bus_error: BaseException | None = None

    # -- introspection ----------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def malformed_frame_count(self) -> int:
        """Frames with our ids that could not be decoded (each logged at WARNING)."""
        return self._malformed_frames

    @property
    def last_status(self) -> PowerStageStatus | None:
        """Most recent STATUS, without waiting (``None`` before the first)."""
        return self._last_status

    # -- PowerStage -------------------------------------------------------

    async def open(self) -> None:
        """Start listening and the heartbeat, read the capabilities, command OFF."""
        if self._open:
            return
        loop = asyncio.get_running_loop()
        if self._bus is None:
            assert self._bus_factory is not None
            try:
                self._bus = await asyncio.to_thread(self._bus_factory)
            except (can.CanError, OSError, ValueError) as exc:
                raise HalInitError(f"power module {self.node_id}: cannot open bus: {exc}") from exc
        bus = self._bus
        self._bus_error = None
        self._last_status = None
        try:
            self._notifier = _start_reader(bus, loop, _Receiver(self))
            heartbeat = self._message(
                self._frames.by_name("HOST_HEARTBEAT"), {"protocol_version": PROTOCOL_VERSION}
            )
            self._heartbeat = bus.send_periodic(heartbeat, self.heartbeat_period_s)
        except (can.CanError, ValueError, NotImplementedError) as exc:
            self._release()
            await self._shutdown_owned_bus()
            raise HalInitError(f"power module {self.node_id}: cannot start: {exc}") from exc
        self._open = True
        try:
            self._capabilities = await self._request_capabilities()
            await self._send("CONTROL", {"mode": MODE_CODES[PowerMode.OFF]})
        except BaseException:
            self._open = False
            self._release()
            await self._shutdown_owned_bus()
            raise
        _log.info("power module %d open: %s", self.node_id, self._capabilities)

    async def close(self) -> None:
        """Command OFF (best effort), then stop heartbeat and notifier. Idempotent."""
        if self._open:
            try:
                await self.set_mode(PowerMode.OFF)
            except (HalTimeoutError, HalOperationError) as exc:
                _log.warning(
                    "power module %d: switching off on close failed: %s", self.node_id, exc
                )
        self._open = False
        self._release()
        await self._shutdown_owned_bus()

    async def capabilities(self) -> PowerStageCapabilities:
        self._check_open()
        assert self._capabilities is not None
        return self._capabilities

    async def set_export_limits(self, voltage_v: float, current_a: float, power_w: float) -> None:
        """Send EXPORT_LIMITS; the module clamps them to its capabilities."""
        _check_limits(voltage_v, current_a, power_w)
        self._check_open()
        await self._send(
            "EXPORT_LIMITS",
            {"target_voltage_v": voltage_v, "current_limit_a": current_a, "power_limit_w": power_w},
        )

    async def set_import_limits(self, voltage_v: float, current_a: float, power_w: float) -> None:
        """Send IMPORT_LIMITS: minimum voltage and current/power magnitudes."""
        _check_limits(voltage_v, current_a, power_w)
        self._check_open()
        await self._send(
            "IMPORT_LIMITS",
            {"min_voltage_v": voltage_v, "current_limit_a": current_a, "power_limit_w": power_w},
        )

    async def set_mode(self, mode: PowerMode) -> None:
        """Command ``mode`` and wait for the module to confirm it.

        ``OFF`` waits (up to ``off_timeout_s``) until the module reports OFF and
        |current| below ``off_current_threshold_a``. Other modes wait (up to
        ``response_timeout_s``) for the module to report that mode; a module
        that reports faults instead raises :class:`HalOperationError`.
        """
        self._check_open()
        caps = self._capabilities
        if mode is PowerMode.IMPORT and caps is not None and not caps.bidirectional:
            raise HalOperationError(f"power module {self.node_id} is not bidirectional")
        last = self._last_status
        if mode is not PowerMode.OFF and last is not None and last.faults:
            raise HalOperationError(
                f"power module {self.node_id} refuses {mode.name}: faults {last.faults!r}"
            )
        await self._send("CONTROL", {"mode": MODE_CODES[mode]})
        if mode is PowerMode.OFF:
            await self._await_off()
        else:
            await self._await_mode(mode)

    async def read_status(self) -> PowerStageStatus:
        """Wait for the next STATUS (HalTimeoutError after ``status_timeout_s``)."""
        self._check_open()
        return await self._next_status(self.status_timeout_s)

    # -- internals: waiting -----------------------------------------------

    async def _next_status(self, timeout_s: float) -> PowerStageStatus:
        self._raise_bus_error()
        waiter: asyncio.Future[PowerStageStatus] = asyncio.get_running_loop().create_future()
        self._status_waiters.append(waiter)
        try:
            # not wait_for: on 3.11 it returns a status that arrives together with a
            # cancellation and drops the cancellation (the status loop never stopped)
            async with asyncio.timeout(timeout_s):
                return await waiter
        except TimeoutError:
            raise HalTimeoutError(
                f"power module {self.node_id}: no STATUS within {timeout_s:.3f} s"
            ) from None
        finally:
            if waiter in self._status_waiters:
                self._status_waiters.remove(waiter)

    async def _await_mode(self, mode: PowerMode) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.response_timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0.0:
                raise HalTimeoutError(
                    f"power module {self.node_id} did not confirm {mode.name} "
                    f"within {self.response_timeout_s:.3f} s"
                )
            status = await self._next_status(remaining)
            if status.mode is mode:
                return
            if status.faults:
                raise HalOperationError(
                    f"power module {self.node_id} refused {mode.name}: faults {status.faults!r}"
                )

    async def _await_off(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.off_timeout_s
        last: PowerStageStatus | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0.0:
                raise HalTimeoutError(
                    f"power module {self.node_id} still carries "
                    f"{'unknown' if last is None else f'{last.current_a:.1f} A'} "
                    f"{self.off_timeout_s:.3f} s after OFF"
                )
            try:
                last = await self._next_status(remaining)
            except HalTimeoutError:
                continue  # re-checks the deadline and reports the last current
            if last.mode is PowerMode.OFF and abs(last.current_a) < self.off_current_threshold_a:
                return

    async def _request_capabilities(self) -> PowerStageCapabilities:
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.open_attempts + 1):
            self._caps_export = None
            self._caps_import = None
            self._caps_waiter = loop.create_future()
            await self._send("CAPABILITIES_REQUEST", {})
            try:
                await asyncio.wait_for(self._caps_waiter, self.response_timeout_s)
            except TimeoutError:
                _log.info(
                    "power module %d: no capabilities (attempt %d of %d)",
                    self.node_id,
                    attempt,
                    self.open_attempts,
                )
                continue
            finally:
                self._caps_waiter = None
            return self._build_capabilities()
        raise HalTimeoutError(
            f"no power module answered on node {self.node_id} "
            f"({self.open_attempts} x {self.response_timeout_s:.3f} s)"
        )

    def _build_capabilities(self) -> PowerStageCapabilities:
        exp, imp = self._caps_export, self._caps_import
        assert exp is not None and imp is not None
        if imp["protocol_version"] != PROTOCOL_VERSION:
            raise HalInitError(
                f"power module {self.node_id} speaks protocol version "
                f"{imp['protocol_version']:g}, we speak {PROTOCOL_VERSION}"
            )
        if exp["min_voltage_v"] > exp["max_voltage_v"]:
            raise HalInitError(f"power module {self.node_id} reports an empty voltage range")
        bidirectional = imp["bidirectional"] == 1.0
        return PowerStageCapabilities(
            min_voltage_v=exp["min_voltage_v"],
            max_voltage_v=exp["max_voltage_v"],
            max_export_current_a=exp["max_current_a"],
            max_export_power_w=exp["max_power_w"],
            max_import_current_a=imp["max_current_a"] if bidirectional else 0.0,
            max_import_power_w=imp["max_power_w"] if bidirectional else 0.0,
            bidirectional=bidirectional,
        )

    # -- internals: I/O ---------------------------------------------------

    def _message(self, frame: Frame, values: dict[str, float]) -> can.Message:
        return can.Message(
            arbitration_id=frame.frame_id,
            is_extended_id=False,
            data=frame.encode(values),
        )

    async def _send(self, frame_name: str, values: dict[str, float]) -> None:
        self._raise_bus_error()
        bus = self._bus
        if bus is None:
            raise HalOperationError(f"power module {self.node_id}: bus is not open")
        msg = self._message(self._frames.by_name(frame_name), values)
        try:
            bus.send(msg)
        except can.CanError as exc:
            raise HalOperationError(
                f"power module {self.node_id}: sending {frame_name} failed: {exc}"
            ) from exc

    def _on_message(self, msg: can.Message) -> None:
        """Dispatch one received frame; runs on the event loop thread."""
        if msg.is_error_frame or msg.is_extended_id:
            return
        function, node = split_arbitration_id(msg.arbitration_id)
        if node != self.node_id or function not in MODULE_TO_HOST:
            return  # another node's or the host's own traffic
        try:
            if msg.is_remote_frame or msg.is_fd:
                raise CodecError("remote or CAN FD frame where a classic data frame is expected")
            decoded = self._frames.decode(msg.arbitration_id, msg.data)
        except CodecError as exc:
            self._malformed_frames += 1
            _log.warning(
                "power module %d: malformed frame id=0x%03X data=%s: %s",
                self.node_id,
                msg.arbitration_id,
                bytes(msg.data).hex(" ") or "-",
                exc,
            )
            return
        name = decoded.frame.name
        if name == "STATUS":
            self._on_status(decoded.values)
        elif name == "CAPABILITIES_EXPORT":
            self._caps_export = decoded.values
            self._maybe_caps_complete()
        elif name == "CAPABILITIES_IMPORT":
            self._caps_import = decoded.values
            self._maybe_caps_complete()

    def _on_status(self, values: dict[str, float]) -> None:
        faults, reserved = faults_from_bits(int(values["faults"]))
        if reserved:
            # A fault this driver does not know is still a fault: fail safe.
            _log.warning(
                "power module %d reports reserved fault bits 0x%04X; treating as INTERNAL",
                self.node_id,
                reserved,
            )
            faults |= PowerStageFault.INTERNAL
        status = PowerStageStatus(
            mode=MODES_BY_CODE[int(values["mode"])],
            voltage_v=values["voltage_v"],
            current_a=values["current_a"],
            temperature_c=values["temperature_c"],
            faults=faults,
        )
        self._last_status = status
        waiters, self._status_waiters = self._status_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(status)

    def _maybe_caps_complete(self) -> None:
        waiter = self._caps_waiter
        if (
            waiter is not None
            and not waiter.done()
            and self._caps_export is not None
            and self._caps_import is not None
        ):
            waiter.set_result(None)

    def _on_bus_error(self, exc: Exception) -> None:
        """python-can's reader died; fail every waiter instead of hanging them."""
        _log.error("power module %d: CAN receive failed: %s", self.node_id, exc)
        self._bus_error = exc
        error = HalOperationError(f"power module {self.node_id}: CAN receive failed: {exc}")
        waiters, self._status_waiters = self._status_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def _raise_bus_error(self) -> None:
        if self._bus_error is not None:
            raise HalOperationError(
                f"power module {self.node_id}: CAN receive failed: {self._bus_error}"
            )

    def _check_open(self) -> None:
        if not self._open:
            raise HalOperationError(f"power module {self.node_id} is not open")

    def _release(self) -> None:
        """Stop heartbeat and notifier and fail whoever still waits."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if isinstance(self._notifier, can.Notifier):
            self._notifier.stop(timeout=2 * _NOTIFIER_POLL_S + 0.5)
        elif self._notifier is not None:
            self._notifier.stop()
        self._notifier = None
        error = HalOperationError(f"power module {self.node_id} closed")
        waiters, self._status_waiters = self._status_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    async def _shutdown_owned_bus(self) -> None:
        """Shut down a bus we created; in a thread because it may block
        (pyserial's socket transport sleeps 0.3 s on close)."""
        if self._bus_factory is None or self._bus is None:
            return
        bus, self._bus = self._bus, None
        try:
            await asyncio.to_thread(bus.shutdown)
        except (can.CanError, OSError) as exc:
            _log.warning("power module %d: bus shutdown failed: %s", self.node_id, exc)


def _start_reader(
    bus: can.BusABC, loop: asyncio.AbstractEventLoop, receiver: _Receiver
) -> can.Notifier | _FdReader:
    try:
        fd = bus.fileno()
    except NotImplementedError:
        fd = -1
    if fd >= 0:
        return _FdReader(bus, fd, loop, receiver)
    return can.Notifier(bus, [receiver], timeout=_NOTIFIER_POLL_S, loop=loop)


def _check_limits(voltage_v: float, current_a: float, power_w: float) -> None:
    for name, value in (("voltage_v", voltage_v), ("current_a", current_a), ("power_w", power_w)):
        if not math.isfinite(value) or value < 0.0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


__all__ = ["BusFactory", "CanPowerStage"]
