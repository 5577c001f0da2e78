"""The PLC link end to end: the real driver and the SLAC matcher against the
simulated modem and car, over a frame pipe (socketpair or UDP on 127.0.0.1) and,
as root, over a veth pair between two network namespaces with AF_PACKET on both
ends. Optionally (PYSLAC_PYTHON), pyslac's EVSE against the simulated car."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from chargepoint.adapters.slac_listen import SlacLinkRunner, slac_listen
from chargepoint.iec61851.cp_state import CpState
from chargepoint.slac import BROADCAST_MAC, SlacParmReq, format_mac
from chargepoint.slac.matcher import (
    Action,
    CpChanged,
    LinkReady,
    MatchingFailed,
    PilotRequest,
    RequestPilot,
    SlacMatcher,
    SlacSettings,
)
from chargepoint.slac.states import MatcherState
from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.plc.driver import PacketPlcLink
from hal.plc.link import PlcLink
from hal.plc.mme import LOCAL_MODEM_MAC, DropReason, Message, encode_frame
from hal.plc.simulated import (
    CarBehaviour,
    CarStops,
    ModemBehaviour,
    PlcChannel,
    SimulatedPlcLine,
    open_frame_pipe,
    open_udp_frame_pipe,
)
from tests.netns import Veth, needs_root_and_ip, veth_pair

HOST_MAC = bytes.fromhex("02aabbccdd01")
# A quick car and quick polling for the tests that are not about timing.
FAST_CAR = CarBehaviour(
    response_timeout_s=0.05, batch_interval_s=0.005, join_delay_s=0.01, matching_rate_s=0.05
)
FAST = SlacSettings(link_poll_s=0.02)
ROOT = Path(__file__).resolve().parents[2]


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (event-driven enough for a test) until ``predicate`` holds."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls simulator state, no event to wait on
            await asyncio.sleep(0.005)


@dataclass
class Rig:
    line: SimulatedPlcLine
    link: PacketPlcLink
    runner: SlacLinkRunner
    actions: list[Action] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    gave_up: asyncio.Event = field(default_factory=asyncio.Event)

    def plug(self) -> None:
        self.runner.post(CpChanged(CpState.B))
        self.line.plug()

    def unplug(self) -> None:
        self.line.unplug()
        self.runner.post(CpChanged(CpState.A))

    @property
    def matcher(self) -> SlacMatcher:
        return self.runner.matcher

    def state(self) -> MatcherState:
        return self.runner.matcher.state

    def link_ready(self) -> LinkReady:
        return next(a for a in self.actions if isinstance(a, LinkReady))


@contextlib.asynccontextmanager
async def make_rig(
    host_sock: socket.socket,
    far_sock: socket.socket,
    *,
    settings: SlacSettings | None = None,
    channel: PlcChannel | None = None,
    modem: ModemBehaviour | None = None,
    car: CarBehaviour | None = None,
    interface: str = "plc0",
    host_mac: bytes | None = HOST_MAC,
    seed: int = 7,
) -> AsyncIterator[Rig]:
    line = SimulatedPlcLine(far_sock, channel=channel, modem=modem, car=car, seed=seed)
    link = PacketPlcLink(interface, sock=host_sock, host_mac=host_mac)
    await link.open()
    matcher = SlacMatcher(
        settings or SlacSettings(), host_mac=link.host_mac, random_bytes=os.urandom
    )
    actions: list[Action] = []
    ready, gave_up = asyncio.Event(), asyncio.Event()

    def on_action(action: Action) -> None:
        actions.append(action)
        if isinstance(action, LinkReady):
            ready.set()
        if isinstance(action, MatchingFailed) and action.final:
            gave_up.set()
        if action == RequestPilot(PilotRequest.RESUME):
            line.car.wake()  # back to 5 % after the E/F step: a sleeping car wakes

    runner = SlacLinkRunner(matcher, link, on_action=on_action)
    rig = Rig(line, link, runner, actions, ready, gave_up)
    tasks = [asyncio.create_task(line.run()), asyncio.create_task(rig.runner.run())]
    try:
        yield rig
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await link.close()


@pytest.fixture(params=["socketpair", "udp"])
def pipe(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    host, far = open_frame_pipe() if request.param == "socketpair" else open_udp_frame_pipe()
    yield host, far
    host.close()
    far.close()


@pytest.fixture
def unix_pipe() -> Iterator[tuple[socket.socket, socket.socket]]:
    host, far = open_frame_pipe()
    yield host, far
    host.close()
    far.close()


async def check_match_and_unplug(rig: Rig) -> None:
    rig.plug()
    await asyncio.wait_for(rig.ready.wait(), 5.0)
    ready = rig.link_ready()
    car = rig.line.car
    assert car.matched.is_set()
    assert ready.ev_mac == car.mac
    assert ready.nid == car.outcome.nid == rig.matcher.nid
    assert car.outcome.evse_mac == rig.link.host_mac
    assert ready.num_sounds == 10 == car.outcome.num_sounds
    assert ready.attenuation_db == pytest.approx(car.outcome.attenuation_db)
    assert 0.3 < ready.match_time_s < 3.0  # dominated by the car's timers
    assert rig.line.modem.link_up(car)
    assert rig.state() is MatcherState.LINKED
    # unplug: the logical network is left with a fresh key [V2G3-M09-17]
    keys = rig.line.modem.keys_set
    rig.unplug()
    await until(lambda: rig.line.modem.keys_set == keys + 1)
    assert rig.line.modem.nmk != car.outcome.nmk
    assert rig.state() is MatcherState.IDLE


# -- end to end over the frame pipe ------------------------------------------------------


async def test_cp_b_to_link_ready_then_unplug_leaves(
    pipe: tuple[socket.socket, socket.socket],
) -> None:
    async with make_rig(*pipe) as rig:
        await until(lambda: rig.matcher.key_confirmed)
        await check_match_and_unplug(rig)
        # and again for the next car, with another key
        nid = rig.link_ready().nid
        rig.actions.clear()
        rig.ready.clear()
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        assert rig.link_ready().nid != nid


async def test_a_lossy_line_still_matches(unix_pipe: tuple[socket.socket, socket.socket]) -> None:
    channel = PlcChannel(loss=0.15, delay_s=0.002, jitter_s=0.003)
    async with make_rig(*unix_pipe, channel=channel, seed=3, car=FAST_CAR, settings=FAST) as rig:
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 10.0)
        assert rig.line.frames_lost > 0
        assert rig.line.modem.link_up(rig.line.car)


async def test_lost_sounds_are_reported_with_the_real_count(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    # the modem only profiles what arrives; a slow car overruns the 600 ms window
    car = CarBehaviour(batch_interval_s=0.07)
    async with make_rig(*unix_pipe, car=car) as rig:
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        assert 0 < rig.link_ready().num_sounds < 10
        assert rig.line.car.outcome.num_sounds == rig.link_ready().num_sounds


async def test_a_slow_line_still_matches(unix_pipe: tuple[socket.socket, socket.socket]) -> None:
    async with make_rig(*unix_pipe, channel=PlcChannel(delay_s=0.03, jitter_s=0.01)) as rig:
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        assert rig.link_ready().match_time_s > 0.5


async def test_a_car_that_gives_up_after_the_parameters(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    car = replace(FAST_CAR, stops=CarStops.AFTER_PARM)
    async with make_rig(*unix_pipe, car=car) as rig:
        rig.plug()
        await asyncio.wait_for(rig.line.car.gave_up.wait(), 5.0)
        await until(lambda: rig.matcher.session_count == 0)  # TT_match_sequence
        assert rig.state() is MatcherState.WAITING
        assert not rig.ready.is_set()


async def test_a_car_that_never_joins_ends_in_x1(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    settings = SlacSettings(match_join_s=0.3, max_join_failures=1, link_poll_s=0.02)
    car = replace(FAST_CAR, stops=CarStops.AFTER_MATCH)
    async with make_rig(*unix_pipe, settings=settings, car=car) as rig:
        rig.plug()
        await asyncio.wait_for(rig.gave_up.wait(), 5.0)
        assert RequestPilot(PilotRequest.X1) in rig.actions
        assert rig.state() is MatcherState.FAILED
        assert not rig.ready.is_set()
        assert rig.line.car.outcome.nid is not None  # it did get the CNF


async def test_a_car_that_restarts_matching_is_matched_again(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    async with make_rig(*unix_pipe, car=FAST_CAR, settings=FAST) as rig:
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        rig.line.car.leave()
        rig.line.car.unplug()
        rig.ready.clear()
        rig.line.plug()  # the car starts over without CP A on our side
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        assert rig.state() is MatcherState.LINKED


async def test_a_sleeping_car_is_woken_by_the_e_f_step(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    settings = SlacSettings(ef_wakeup=True, slac_init_s=0.2, step_ef_s=0.1, link_poll_s=0.02)
    car = replace(FAST_CAR, start_on_plug=False)
    async with make_rig(*unix_pipe, settings=settings, car=car) as rig:
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        pilots = [a.request for a in rig.actions if isinstance(a, RequestPilot)]
        assert pilots[:2] == [PilotRequest.STATE_F, PilotRequest.RESUME]


async def test_a_modem_that_makes_no_profiles_is_not_chosen(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    # AR7420-style adapters send no CM_ATTEN_PROFILE.IND: we report 254 dB, the car refuses
    modem = ModemBehaviour(makes_profiles=False)
    car = replace(FAST_CAR, max_attempts=2)
    async with make_rig(*unix_pipe, modem=modem, car=car) as rig:
        rig.plug()
        await asyncio.wait_for(rig.line.car.gave_up.wait(), 6.0)
        assert rig.line.car.outcome.errors[-1].startswith("attenuation 254.0 dB")
        assert not rig.ready.is_set()


async def test_a_lab_modem_without_profiles_can_be_allowed(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    settings = replace(FAST, aag_without_sounds_db=1)
    modem = ModemBehaviour(makes_profiles=False)
    async with make_rig(*unix_pipe, settings=settings, modem=modem, car=FAST_CAR) as rig:
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        assert rig.link_ready().num_sounds == 0
        assert rig.link_ready().attenuation_db is None


async def test_validation_is_answered_not_required(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    car = replace(FAST_CAR, validate=True)
    async with make_rig(*unix_pipe, car=car, settings=FAST) as rig:
        rig.plug()
        await asyncio.wait_for(rig.ready.wait(), 5.0)
        assert rig.line.car.outcome.validate_result == 4


async def test_a_modem_that_refuses_the_key_is_reported(
    unix_pipe: tuple[socket.socket, socket.socket],
) -> None:
    settings = SlacSettings(key_retries=1, key_timeout_s=0.2)
    async with make_rig(
        *unix_pipe, settings=settings, modem=ModemBehaviour(set_key_result=0x02)
    ) as rig:
        await until(lambda: any(isinstance(a, MatchingFailed) for a in rig.actions), timeout_s=3.0)
        failure = next(a for a in rig.actions if isinstance(a, MatchingFailed))
        assert "did not take the key" in failure.reason
        assert rig.line.modem.keys_set == 0


# -- the driver itself -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def driver_and_line(
    modem: ModemBehaviour | None = None,
) -> AsyncIterator[tuple[PacketPlcLink, SimulatedPlcLine, socket.socket]]:
    host, far = open_frame_pipe()
    line = SimulatedPlcLine(far, modem=modem, seed=1)
    link = PacketPlcLink.over_socket(host, interface="plc0", host_mac=HOST_MAC)
    await link.open()
    task = asyncio.create_task(line.run())
    try:
        yield link, line, far
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await link.close()


async def test_modem_operations() -> None:
    async with driver_and_line() as (link, line, _far):
        version = await link.read_version()
        assert version.version.startswith("MAC-QCA7000")
        assert await link.link_status() is False
        cnf = await link.set_key(b"\x01" * 16, b"\x02" * 7)
        assert cnf.result == 1 and line.modem.nmk == b"\x01" * 16
        await link.reset_modem()
        assert line.modem.resets == 1 and line.modem.nmk is None
        assert link.interface == "plc0" and link.host_mac == HOST_MAC


async def test_hpgp_success_code_is_accepted_and_refusal_raises() -> None:
    async with driver_and_line(ModemBehaviour(set_key_result=0)) as (link, _line, _far):
        assert (await link.set_key(b"\x01" * 16, b"\x02" * 7)).result == 0
    async with driver_and_line(ModemBehaviour(set_key_result=7)) as (link, _line, _far):
        with pytest.raises(HalOperationError, match="refused"):
            await link.set_key(b"\x01" * 16, b"\x02" * 7)


async def test_no_answer_is_a_timeout() -> None:
    async with driver_and_line(ModemBehaviour(answer_set_key=False)) as (link, _line, _far):
        with pytest.raises(HalTimeoutError):
            await link.set_key(b"\x01" * 16, b"\x02" * 7, timeout_s=0.05)


async def test_garbage_is_counted_and_valid_frames_still_arrive() -> None:
    host, far = open_frame_pipe()
    link = PacketPlcLink.over_socket(host, interface="plc0", host_mac=HOST_MAC)
    await link.open()
    try:
        ev = bytes.fromhex("0a0000000001")
        far.send(b"\x00" * 10)
        far.send(b"\xff" * 12 + b"\x08\x00" + b"\x00" * 46)  # IPv4
        far.send(encode_frame(bytes.fromhex("02ffffffff01"), ev, SlacParmReq(run_id=b"1" * 8)))
        far.send(encode_frame(HOST_MAC, LOCAL_MODEM_MAC, _sw_ver_cnf()))  # nobody asked
        far.send(encode_frame(BROADCAST_MAC, ev, SlacParmReq(run_id=b"2" * 8)))
        mme = await asyncio.wait_for(link.receive(), 1.0)
        assert mme.message == SlacParmReq(run_id=b"2" * 8)
        stats = link.stats
        assert stats.dropped[DropReason.TOO_SHORT] == 1
        assert stats.dropped[DropReason.FOREIGN_ETHERTYPE] == 1
        assert stats.not_for_us == 1
        assert stats.unsolicited == 1
        assert stats.frames_rx == 5
    finally:
        await link.close()
        far.close()


def _sw_ver_cnf() -> Message:
    from hal.plc.mme import VsSwVerCnf  # noqa: PLC0415

    return VsSwVerCnf(status=0, device_class=1, version="x")


async def test_close_is_idempotent_and_a_closed_link_refuses_work() -> None:
    host, far = open_frame_pipe()
    link = PacketPlcLink.over_socket(host, interface="plc0", host_mac=HOST_MAC)
    await link.open()
    with pytest.raises(HalInitError):
        await link.open()
    await link.close()
    await link.close()
    with pytest.raises(HalOperationError):
        await link.receive()
    with pytest.raises(HalOperationError):
        await link.send(BROADCAST_MAC, SlacParmReq(run_id=b"1" * 8))
    far.close()


async def test_the_far_side_going_away_ends_receive() -> None:
    host, far = open_frame_pipe()
    link = PacketPlcLink.over_socket(host, interface="plc0", host_mac=HOST_MAC)
    await link.open()
    try:
        waiting = asyncio.create_task(link.receive())
        await asyncio.sleep(0)
        far.close()
        with pytest.raises(HalOperationError):
            await asyncio.wait_for(waiting, 1.0)
    finally:
        await link.close()


def test_the_driver_satisfies_the_protocol() -> None:
    host, far = open_frame_pipe()
    link: PlcLink = PacketPlcLink.over_socket(host, interface="plc0", host_mac=HOST_MAC)
    assert link.interface == "plc0"
    host.close()
    far.close()


# -- the commissioning tool ----------------------------------------------------------------


async def test_slac_listen_prints_the_match(unix_pipe: tuple[socket.socket, socket.socket]) -> None:
    host, far = unix_pipe
    line = SimulatedPlcLine(far, seed=5)
    link = PacketPlcLink.over_socket(host, interface="plc0", host_mac=HOST_MAC)
    out, err = io.StringIO(), io.StringIO()
    sim = asyncio.create_task(line.run())
    try:
        listen = asyncio.create_task(
            slac_listen("plc0", timeout_s=5.0, out=out, err=err, link=link)
        )
        await until(lambda: "listening" in out.getvalue())
        line.plug()
        assert await listen == 0, err.getvalue()
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
    text = out.getvalue()
    assert f"EV MAC:      {format_mac(line.car.mac)}" in text
    assert f"NID:         {line.car.outcome.nid.hex()}" in text  # type: ignore[union-attr]
    assert "attenuation: " in text and "average of 10 sounds" in text
    assert "match time:  " in text
    assert line.modem.nmk != line.car.outcome.nmk  # left the network on exit


async def test_slac_listen_times_out(unix_pipe: tuple[socket.socket, socket.socket]) -> None:
    host, far = unix_pipe
    line = SimulatedPlcLine(far, seed=5)
    link = PacketPlcLink.over_socket(host, interface="plc0", host_mac=HOST_MAC)
    out, err = io.StringIO(), io.StringIO()
    sim = asyncio.create_task(line.run())
    try:
        code = await slac_listen("plc0", timeout_s=0.3, out=out, err=err, link=link)
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
    assert code == 1
    assert "no match" in err.getvalue()


async def test_slac_listen_on_a_missing_interface_is_exit_2() -> None:
    err = io.StringIO()
    code = await slac_listen("nonexistent-if0", timeout_s=0.1, out=io.StringIO(), err=err)
    assert code == 2
    assert err.getvalue().count("\n") == 1
    assert "nonexistent-if0" in err.getvalue()


def test_cli_slac_listen_missing_interface() -> None:
    command = ["slac", "listen", "--interface", "nope-if0", "--timeout", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "chargepoint", *command],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: nope-if0:")


# -- as root: a veth pair between two network namespaces, AF_PACKET on both ends --------------


@pytest.fixture
def veth() -> Iterator[Veth]:
    with veth_pair("slac") as pair:
        yield pair


@needs_root_and_ip
async def test_veth_cp_b_to_link_ready_with_af_packet(veth: Veth) -> None:
    host, mac = veth.evse_socket()
    far = veth.ev_socket()
    async with make_rig(host, far, interface=veth.evse_if, host_mac=None) as rig:
        assert rig.link.host_mac == mac  # from the AF_PACKET socket itself
        await until(lambda: rig.matcher.key_confirmed)
        await check_match_and_unplug(rig)
        assert rig.link.stats.dropped.total() == 0


@needs_root_and_ip
async def test_veth_cli_slac_listen(veth: Veth) -> None:
    far = veth.ev_socket()
    line = SimulatedPlcLine(far, seed=11)
    sim = asyncio.create_task(line.run())
    try:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", veth.evse_ns, sys.executable, "-m", "chargepoint",
            "slac", "listen", "--interface", veth.evse_if, "--timeout", "10",
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not lines or not lines[-1].startswith("listening"):
                lines.append((await proc.stdout.readline()).decode())
                assert lines[-1], "the listener ended early"
            line.plug()
            rest, err = await proc.communicate()
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
    text = "".join(lines) + rest.decode()
    assert proc.returncode == 0, err.decode()
    assert f"EV MAC:      {format_mac(line.car.mac)}" in text
    assert "modem on plc-evse: MAC-QCA7000" in text


PYSLAC_EVSE = r"""
import asyncio, logging, sys
logging.disable(logging.CRITICAL)
import pyslac.session as ps
from pyslac.environment import Config
from pyslac.enums import STATE_MATCHED
ps.SLAC_SETTLE_TIME = 0.2  # pyslac waits 10 s after CM_SET_KEY for a real modem

async def main(iface):
    cfg = Config()
    cfg.load_envs(sys.argv[2])  # an empty .env: pyslac's defaults
    session = ps.SlacEvseSession("EVSE1", iface, cfg)
    await session.evse_set_key()
    print("KEYED", flush=True)
    await ps.SlacSessionController().process_cp_state(session, "B")
    for _ in range(300):
        if session.state == STATE_MATCHED:
            print("MATCHED", session.nid.hex(), session.pev_mac.hex(), flush=True)
            return 0
        await asyncio.sleep(0.05)
    print("FAILED", session.state, flush=True)
    return 1

sys.exit(asyncio.run(main(sys.argv[1])))
"""


@needs_root_and_ip
@pytest.mark.skipif(
    not os.environ.get("PYSLAC_PYTHON"), reason="set PYSLAC_PYTHON to a python with pyslac"
)
async def test_veth_pyslac_evse_matches_the_simulated_car(veth: Veth, tmp_path: Path) -> None:
    script = tmp_path / "pyslac_evse.py"
    script.write_text(PYSLAC_EVSE)
    (tmp_path / ".env").write_text("")
    far = veth.ev_socket()
    line = SimulatedPlcLine(far, seed=13, car=CarBehaviour(batch_interval_s=0.03))
    sim = asyncio.create_task(line.run())
    try:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", veth.evse_ns, os.environ["PYSLAC_PYTHON"], str(script),
            veth.evse_if, str(tmp_path / ".env"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            first = (await proc.stdout.readline()).decode()
            if not first.startswith("KEYED"):
                assert proc.stderr is not None
                pytest.fail(f"pyslac did not start: {(await proc.stderr.read()).decode()[-2000:]}")
            line.plug()
            out, err = await proc.communicate()
            assert proc.returncode == 0, out.decode() + err.decode()[-2000:]
            await line.car.matched.wait()  # pyslac exits as soon as its CNF is out
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
    _, nid, pev_mac = out.decode().split()
    assert bytes.fromhex(pev_mac) == line.car.mac
    assert line.car.matched.is_set() and not line.car.outcome.errors
    assert line.car.outcome.nid == bytes.fromhex(nid)  # pyslac's NID = ours for its NMK
    assert line.modem.link_up(line.car)
