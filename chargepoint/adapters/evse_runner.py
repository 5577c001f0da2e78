"""The asyncio shell around one :class:`~chargepoint.evse.controller.EvseController`.

The safety loop reads the pilot board, feeds the controller, carries out its
commands and sleeps until the controller's next deadline. It shares nothing
with protocol traffic: CSMS and operator commands enter through :meth:`submit`,
which calls the (synchronous) controller and the same actuator path, never a
queue the safety loop waits on. Commands are carried out in order under one
lock, so the safety order (power stage Off, then contactor permission off)
holds whoever triggered it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from chargepoint.adapters.hal_bridge import isolation_event, pilot_event, power_stage_event
from chargepoint.errors import HalError
from chargepoint.evse.actions import (
    Action,
    ClearBoardFaults,
    Command,
    FaultLatched,
    FaultsCleared,
    PowerDirection,
    SetContactorPermission,
    SetIsolationMonitor,
    SetLock,
    SetPilotF,
    SetPilotPwm,
    SetPilotX1,
    SetPowerStage,
    StateChanged,
    SwitchPowerStageOff,
)
from chargepoint.evse.controller import EvseController
from chargepoint.evse.events import (
    Event,
    IsolationObserved,
    MeterObserved,
    PilotObserved,
    TaskCrashed,
)
from chargepoint.evse.session import MeterSnapshot, SessionSummary, SessionTracker
from hal.isolation import IsolationMonitor, IsolationReading
from hal.meter import Meter, MeterReading
from hal.pilot import PilotBoard
from hal.power_stage import PowerMode, PowerStage, PowerStageStatus

log = logging.getLogger(__name__)


KEEPALIVE_PERIOD_S = 0.05  # docs/pilot-board-protocol.md: host keep-alive at least every 50 ms
# The keep-alive stops when the safety loop has not passed for this long, so a hung
# safety path still makes the board open the contactors (its own timeout: 300 ms).
KEEPALIVE_STALL_S = 0.5
RELINK_PERIOD_S = 1.0
RELINK_MIN_S = 0.1  # board reopen back-off: 0.1 s doubling to 5 s
RELINK_MAX_S = 5.0
METER_PERIOD_S = 1.0
METER_FAILURES_FOR_FAULT = 3  # consecutive failed reads (~3 s) latch FaultKind.METER
# Every hardware command is bounded below the board's 300 ms keep-alive timeout. A
# power stage still ramping down after EvseSettings.power_off_wait_s loses the
# contactor permission anyway (the safe state wins over contact wear).
COMMAND_TIMEOUT_S = 0.2


@dataclass(frozen=True, slots=True)
class EvseDevices:
    board: PilotBoard
    meter: Meter | None = None
    power_stage: PowerStage | None = None
    isolation: IsolationMonitor | None = None


Published = Action | SessionSummary | MeterReading
Listener = Callable[[int, Published], None]


class EvseRunner:
    def __init__(
        self,
        evse_id: int,
        controller: EvseController,
        devices: EvseDevices,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.evse_id = evse_id
        self.controller = controller
        self.devices = devices
        self.listeners: list[Listener] = listeners if listeners is not None else []
        self.sessions = SessionTracker(evse_id)
        self.last_summary: SessionSummary | None = None
        self.last_meter: MeterReading | None = None
        self.last_pilot: PilotObserved | None = None
        self.last_power_stage: PowerStageStatus | None = None
        self.last_isolation: IsolationReading | None = None
        # called (synchronously, must not block) after anything observed changed:
        # the ISO 15118 session follows CP, contactors, voltages and faults this way
        self.observers: list[Callable[[], None]] = []
        self._stage_mode = PowerMode.OFF
        self.safety_heartbeat: float | None = None  # loop time of the last safety-loop pass
        self.max_safety_gap_s = 0.0  # the longest time between two safety-loop passes
        self._board_link_up = True  # the safety loop owns the link; the keep-alive follows it
        self._meter_failures = 0  # consecutive failed reads
        self._relink_at = 0.0  # loop time of the next board reopen attempt
        self._relink_delay_s = RELINK_MIN_S
        self._relink_attempts = 0
        self.ready = asyncio.Event()  # set after the first board status
        self._lock = asyncio.Lock()
        self._notices: asyncio.Queue[Action] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    # -- the safety path -------------------------------------------------------
    async def safety_loop(self) -> None:
        """Board status -> controller -> commands, plus the controller's timers."""
        board = self.devices.board
        ctl = self.controller
        await self._execute(ctl.start(self.now()))
        while True:
            now = self.now()
            if self.safety_heartbeat is not None:  # starvation shows here (bench, tests)
                self.max_safety_gap_s = max(self.max_safety_gap_s, now - self.safety_heartbeat)
            self.safety_heartbeat = now
            deadline = ctl.next_deadline()
            wake = now + KEEPALIVE_PERIOD_S if deadline is None else deadline
            actions: list[Action] = []
            link_up = self._board_link_up
            try:
                if link_up:
                    async with asyncio.timeout_at(wake):
                        status = await board.read_status()
                    event = pilot_event(status)
                    changed = event != self.last_pilot
                    self.last_pilot = event
                    actions = ctl.handle(event, self.now())
                    if changed:
                        self._observed()
                    if not self.ready.is_set():
                        self.ready.set()
                else:
                    link_up = await self._relink(wake)
            except TimeoutError:
                pass
            except HalError as exc:
                log.error("evse %d: pilot board link lost: %s", self.evse_id, exc)
                link_up = False
            self._board_link_up = link_up
            now = self.now()
            deadline = ctl.next_deadline()
            if deadline is not None and now >= deadline:
                actions += ctl.handle_timer(now)
            if actions:
                await self._execute(actions)
            self.safety_heartbeat = now

    async def keepalive_loop(self) -> None:
        """The board keep-alive on its own task, every 50 ms: a slow command (a power
        stage ramping down under the command lock) cannot starve it. It pauses while
        the safety loop is stalled, so the board's own timeout still catches a hung
        safety path, and while the link is down (the safety loop reopens it)."""
        board = self.devices.board
        failing = False
        while True:
            heartbeat = self.safety_heartbeat
            alive = heartbeat is not None and self.now() - heartbeat < KEEPALIVE_STALL_S
            if alive and self._board_link_up:
                try:
                    await board.send_keepalive()
                    failing = False
                except HalError as exc:
                    if not failing:  # once per outage; the safety loop handles the link
                        log.error("evse %d: pilot board keep-alive failed: %s", self.evse_id, exc)
                    failing = True
            await asyncio.sleep(KEEPALIVE_PERIOD_S)

    async def _relink(self, until: float) -> bool:
        """Try to reopen a lost board link, backing off (0.1 s doubling to 5 s) and
        logging each attempt at most at that rate; the controller's timers keep
        running in between (the keep-alive fault stays latched meanwhile)."""
        now = self.now()
        if now < self._relink_at:
            await asyncio.sleep(max(0.0, min(self._relink_at, until) - now))
            return False
        board = self.devices.board
        await board.close()
        try:
            await board.open()
        except HalError as exc:
            self._relink_attempts += 1
            log.warning(
                "evse %d: pilot board reopen failed (attempt %d, next in %.1f s): %s",
                self.evse_id,
                self._relink_attempts,
                self._relink_delay_s,
                exc,
            )
            self._relink_at = self.now() + self._relink_delay_s
            self._relink_delay_s = min(RELINK_MAX_S, self._relink_delay_s * 2)
            await asyncio.sleep(max(0.0, min(self._relink_at, until) - self.now()))
            return False
        log.info("evse %d: pilot board link restored", self.evse_id)
        self._relink_attempts = 0
        self._relink_delay_s = RELINK_MIN_S
        return True

    async def submit(self, event: Event) -> list[Action]:
        """Feed a command (operator, CSMS, ISO 15118 session, crash report) and carry it out."""
        actions = self.controller.handle(event, self.now())
        await self._execute(actions)
        if actions:
            self._observed()
        return actions

    def _observed(self) -> None:
        for observer in self.observers:
            observer()

    async def report_crash(self, task: str, detail: str) -> None:
        await self.submit(TaskCrashed(task, detail))

    async def shutdown(self) -> None:
        """Orderly stop: power off, permission off, CP at F; then close the devices."""
        try:
            await self._execute(self.controller.shutdown(self.now()))
        except HalError as exc:
            log.error("evse %d: shutdown commands failed: %s", self.evse_id, exc)
        for device in (
            self.devices.power_stage,
            self.devices.isolation,
            self.devices.meter,
            self.devices.board,
        ):
            if device is not None:
                try:
                    await device.close()
                except HalError as exc:
                    log.error("evse %d: closing %s failed: %s", self.evse_id, device, exc)

    async def _execute(self, actions: list[Action]) -> None:
        notices: list[Action] = []
        async with self._lock:
            for action in actions:
                if isinstance(action, Command):  # the union from actions.py, not a copy
                    await self._command(action)
                else:
                    notices.append(action)
        for notice in notices:
            self._notices.put_nowait(notice)  # handled off the safety path

    async def notice_loop(self) -> None:
        """Logs, sessions and listeners: may wait on the meter, so not on the safety path."""
        while True:
            notice = await self._notices.get()
            await self._notice(notice)
            _stop_if_cancelled()

    async def _command(self, command: Command) -> None:
        """Carry out one command, bounded in time; a failed one is logged and the next
        still runs.

        A board that cannot be reached has lost our keep-alive too and opens the
        contactors by itself; the controller latches the keep-alive fault.
        """
        if isinstance(command, SwitchPowerStageOff):
            await self._power_stage_off()  # bounded by power_off_wait_s, never raises
            return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await self._carry_out(command)
        except (HalError, TimeoutError) as exc:
            log.error("evse %d: %s failed: %r", self.evse_id, command, exc)

    async def _carry_out(self, command: Command) -> None:
        board = self.devices.board
        match command:
            case SetContactorPermission(granted=granted):
                await board.set_contactor_permission(granted)
            case SetPilotPwm(duty_pct=duty):
                await board.set_pwm(duty)
            case SetPilotX1():
                await board.set_x1()
            case SetPilotF():
                await board.set_state_f()
            case ClearBoardFaults():
                await board.clear_faults()
            case SetLock(locked=locked):
                await board.set_lock(locked)
            case SetPowerStage():
                await self._set_power_stage(command)
            case SetIsolationMonitor(on=on):
                monitor = self.devices.isolation
                if monitor is not None:
                    await (monitor.start() if on else monitor.stop())

    async def _set_power_stage(self, command: SetPowerStage) -> None:
        stage = self.devices.power_stage
        if stage is None:
            return
        v, i, p = command.voltage_v, command.current_a, command.power_w
        if command.direction is PowerDirection.EXPORT:
            await stage.set_export_limits(v, i, p)
            mode = PowerMode.EXPORT
        else:
            await stage.set_import_limits(v, i, p)
            mode = PowerMode.IMPORT
        if mode is not self._stage_mode:
            await stage.set_mode(mode)
            self._stage_mode = mode

    async def _power_stage_off(self) -> None:
        stage = self.devices.power_stage
        self._stage_mode = PowerMode.OFF
        if stage is None:
            return
        try:
            async with asyncio.timeout(self.controller.settings.power_off_wait_s):
                await stage.set_mode(PowerMode.OFF)
        except (TimeoutError, HalError) as exc:
            # The contactor permission is withdrawn next regardless; the board
            # microcontroller will open under load rather than stay closed.
            log.error("evse %d: power stage did not switch off: %r", self.evse_id, exc)

    async def _notice(self, notice: Action) -> None:
        match notice:
            case StateChanged(old=old, new=new, cp_state=cp):
                log.info("evse %d: %s -> %s (CP %s)", self.evse_id, old.name, new.name, cp.value)
                meter = await self.read_meter()
                summary = self.sessions.on_state(old, new, meter, self.now())
                if summary is not None:
                    self.last_summary = summary
                    log.info(
                        "evse %d: session %d ended (%s): %.1f s, %.3f Wh imported, "
                        "%.3f Wh exported",
                        self.evse_id,
                        summary.number,
                        summary.end_reason,
                        summary.duration_s,
                        summary.energy_imported_wh,
                        summary.energy_exported_wh,
                    )
                    self._publish(summary)
            case FaultLatched(fault=fault):
                log.error(
                    "evse %d: fault latched: %s (%s)", self.evse_id, fault.kind.value, fault.detail
                )
            case FaultsCleared(kinds=kinds):
                log.warning(
                    "evse %d: faults cleared: %s", self.evse_id, ", ".join(k.value for k in kinds)
                )
            case _:
                log.debug("evse %d: %s", self.evse_id, notice)
        self._publish(notice)

    def _publish(self, item: Published) -> None:
        for listener in self.listeners:
            listener(self.evse_id, item)

    async def read_meter(self) -> MeterSnapshot:
        meter = self.devices.meter
        if meter is not None:
            try:
                self.last_meter = await meter.read()
                _stop_if_cancelled()
            except HalError as exc:
                _stop_if_cancelled()
                self._meter_failures += 1
                log.error("evse %d: meter read failed: %s", self.evse_id, exc)
                if self._meter_failures == METER_FAILURES_FOR_FAULT:
                    await self.submit(MeterObserved(False, str(exc)))
            else:
                if self._meter_failures >= METER_FAILURES_FOR_FAULT:
                    log.warning("evse %d: the meter answers again", self.evse_id)
                    await self.submit(MeterObserved(True))
                self._meter_failures = 0
        if self.last_meter is None:
            return MeterSnapshot(0.0, 0.0)
        return MeterSnapshot(self.last_meter.import_energy_wh, self.last_meter.export_energy_wh)

    # -- other device loops (not on the safety path) ---------------------------------
    async def meter_loop(self) -> None:
        while True:
            _stop_if_cancelled()
            await self.read_meter()
            if self.last_meter is not None:
                self._publish(self.last_meter)
            await asyncio.sleep(METER_PERIOD_S)

    async def power_stage_loop(self) -> None:
        stage = self.devices.power_stage
        if stage is None:
            return
        while True:
            _stop_if_cancelled()
            try:
                status = await stage.read_status()
            except HalError as exc:  # the controller's keep-alive timer latches the fault
                log.error("evse %d: power stage read failed: %s", self.evse_id, exc)
                await asyncio.sleep(RELINK_PERIOD_S)
                continue
            self.last_power_stage = status
            await self.submit(power_stage_event(status))
            self._observed()

    async def isolation_loop(self) -> None:
        monitor = self.devices.isolation
        if monitor is None:
            return
        while True:
            _stop_if_cancelled()
            try:
                reading = await monitor.read()
            except HalError as exc:
                log.error("evse %d: isolation monitor read failed: %s", self.evse_id, exc)
                await self.submit(IsolationObserved(None, device_fault=True))
                await asyncio.sleep(RELINK_PERIOD_S)
                continue
            self.last_isolation = reading
            await self.submit(isolation_event(reading))
            self._observed()


def _stop_if_cancelled() -> None:
    """Honour a cancellation that a driver's library swallowed.

    On Python 3.11, ``asyncio.wait_for`` inside a third-party driver (pymodbus)
    can lose a cancellation that races with its inner future; the device loop
    would then run on and the service's task group could never finish stopping.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
