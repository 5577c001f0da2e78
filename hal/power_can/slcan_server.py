"""Serve a python-can bus as a Lawicel / slcan adapter on a TCP socket.

This makes a simulated module (or anything else on an in-process virtual bus)
reachable from another process without a kernel CAN device: the other process
opens ``can.Bus(interface="slcan", channel="socket://127.0.0.1:PORT", ...)``
(see :func:`slcan_client_bus`) and talks to it as to a USB-CAN adapter.

The subset served is what python-can 4.6's ``slcan`` interface uses, plus the
harmless query commands of the original protocol. Every command is a line
ending in CR; the reply is CR (ok) or BEL (error):

* ``O`` open, ``L`` open listen-only, ``C`` close;
* ``S0``..``S9`` bit rate, ``sXXYY`` bit timing registers (only while closed,
  recorded but meaningless here), an empty line (python-can sends one for
  "no CAN FD data rate");
* ``tIIILDD..`` / ``TIIIIIIIILDD..`` / ``rIIIL`` / ``RIIIIIIIIL`` transmit a
  data / remote frame; replied to with ``z`` / ``Z`` + CR while open;
* ``V`` version (``V1013``), ``N`` serial number, ``F`` status flags (``F00``),
  ``Z0`` (timestamps stay off), ``M`` / ``m`` acceptance filter (accepted,
  not applied).

Received frames go to every client whose channel is open, as the same ``t`` /
``T`` / ``r`` / ``R`` lines without timestamp. A frame sent by one client also
goes to the other clients, as it would on a real shared bus. CAN FD is not
served. The server listens on loopback only and borrows ``bus``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import can

from hal.power_can.simulated import SimulatedPowerModule
from hal.power_stage import PowerStageCapabilities
from hal.sim.plant import Plant

_log = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
_OK = b"\r"
_ERROR = b"\a"
_MAX_LINE_BYTES = 64
# A client that stops reading loses frames instead of growing our buffers.
_MAX_CLIENT_BACKLOG_BYTES = 64 * 1024
_NOTIFIER_POLL_S = 0.05
_CLIENT_CLOSE_TIMEOUT_S = 1.0
_VERSION_REPLY = b"V1013\r"
_SERIAL_REPLY = b"NSIM0\r"

_BITRATE_CODES: dict[str, int] = {
    "0": 10_000,
    "1": 20_000,
    "2": 50_000,
    "3": 100_000,
    "4": 125_000,
    "5": 250_000,
    "6": 500_000,
    "7": 750_000,
    "8": 1_000_000,
    "9": 83_300,
}
_FRAME_RE = {
    "t": re.compile(r"t([0-9A-Fa-f]{3})([0-8])([0-9A-Fa-f]*)"),
    "T": re.compile(r"T([0-9A-Fa-f]{8})([0-8])([0-9A-Fa-f]*)"),
    "r": re.compile(r"r([0-9A-Fa-f]{3})([0-8])"),
    "R": re.compile(r"R([0-9A-Fa-f]{8})([0-8])"),
}


class SlcanLineError(ValueError):
    """A client line is not a valid slcan command."""


def format_frame(msg: can.Message) -> bytes | None:
    """Frame -> slcan line (``None`` for what slcan cannot carry: FD, error frames)."""
    if msg.is_fd or msg.is_error_frame or msg.dlc > 8:
        return None
    if msg.is_remote_frame:
        if msg.is_extended_id:
            return f"R{msg.arbitration_id:08X}{msg.dlc:d}\r".encode()
        return f"r{msg.arbitration_id:03X}{msg.dlc:d}\r".encode()
    data = bytes(msg.data).hex().upper()
    if msg.is_extended_id:
        return f"T{msg.arbitration_id:08X}{len(msg.data):d}{data}\r".encode()
    return f"t{msg.arbitration_id:03X}{len(msg.data):d}{data}\r".encode()


def parse_frame(line: str) -> can.Message:
    """slcan transmit command (without CR) -> frame; :class:`SlcanLineError` if bad."""
    kind = line[:1]
    pattern = _FRAME_RE.get(kind)
    match = pattern.fullmatch(line) if pattern is not None else None
    if match is None:
        raise SlcanLineError(f"not a classic slcan frame: {line!r}")
    frame_id = int(match.group(1), 16)
    dlc = int(match.group(2))
    extended = kind in "TR"
    if frame_id > (0x1FFF_FFFF if extended else 0x7FF):
        raise SlcanLineError(f"identifier out of range: {line!r}")
    if kind in "rR":
        return can.Message(
            arbitration_id=frame_id, is_extended_id=extended, is_remote_frame=True, dlc=dlc
        )
    hex_data = match.group(3)
    if len(hex_data) != 2 * dlc:
        raise SlcanLineError(
            f"{dlc} data bytes announced, {len(hex_data)} hex digits given: {line!r}"
        )
    return can.Message(
        arbitration_id=frame_id, is_extended_id=extended, data=bytes.fromhex(hex_data)
    )


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    peer: str
    is_open: bool = False
    listen_only: bool = False
    bitrate: int | None = None
    dropped_frames: int = 0

    def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(data)


class SlcanTcpServer:
    """slcan-over-TCP gateway for one python-can bus (see module docstring)."""

    def __init__(self, bus: can.BusABC, *, host: str = LOOPBACK_HOST, port: int = 0) -> None:
        if host != LOOPBACK_HOST:
            raise ValueError(f"the slcan server listens on {LOOPBACK_HOST} only, not {host!r}")
        self.bus = bus
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._notifier: can.Notifier | None = None
        self._clients: dict[_Client, asyncio.Task[None]] = {}
        self.bad_line_count = 0

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(
            self._serve_client, self.host, self._requested_port, limit=_MAX_LINE_BYTES
        )
        self._notifier = can.Notifier(
            self.bus, [self._from_bus], timeout=_NOTIFIER_POLL_S, loop=loop
        )
        _log.info("slcan server on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop listening, drop clients, detach from the bus. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Closing the transport ends each client task through EOF; cancelling
        # them instead makes asyncio's stream callback log a spurious error.
        for client in list(self._clients):
            client.writer.close()
        tasks = list(self._clients.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=_CLIENT_CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()
        self._clients.clear()
        if server is not None:
            await server.wait_closed()
        if self._notifier is not None:
            self._notifier.stop(timeout=2 * _NOTIFIER_POLL_S + 0.5)
            self._notifier = None

    async def __aenter__(self) -> SlcanTcpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- bus -> clients ---------------------------------------------------

    def _from_bus(self, msg: can.Message) -> None:
        self._broadcast(msg, exclude=None)

    def _broadcast(self, msg: can.Message, exclude: _Client | None) -> None:
        line = format_frame(msg)
        if line is None:
            return
        for client in self._clients:
            if client is exclude or not client.is_open:
                continue
            transport = client.writer.transport
            if transport.get_write_buffer_size() > _MAX_CLIENT_BACKLOG_BYTES:
                client.dropped_frames += 1
                if client.dropped_frames == 1:
                    _log.warning("slcan client %s is not reading; dropping frames", client.peer)
                continue
            client.write(line)

    # -- client -> bus ----------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = str(writer.get_extra_info("peername"))
        client = _Client(writer, peer)
        task = asyncio.current_task()
        assert task is not None
        self._clients[client] = task
        _log.info("slcan client %s connected", peer)
        try:
            while True:
                try:
                    raw = await reader.readuntil(_OK)
                except asyncio.IncompleteReadError:
                    break  # client went away
                except asyncio.LimitOverrunError:
                    _log.warning("slcan client %s sent an overlong line; disconnecting", peer)
                    break
                line = raw[:-1].decode("ascii", errors="replace").strip("\n")
                client.write(self._handle_line(client, line))
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            _log.info("slcan client %s: connection lost: %s", peer, exc)
        finally:
            self._clients.pop(client, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            _log.info("slcan client %s disconnected", peer)

    def _handle_line(self, client: _Client, line: str) -> bytes:
        """Execute one command line and return the reply bytes."""
        command = line[:1]
        if line == "":
            return _OK
        if command in ("O", "L") and len(line) == 1:
            client.is_open = True
            client.listen_only = command == "L"
            return _OK
        if line == "C":
            client.is_open = False
            return _OK
        if command == "S" and line[1:] in _BITRATE_CODES:
            if client.is_open:
                return self._bad(client, line, "bit rate change while open")
            client.bitrate = _BITRATE_CODES[line[1:]]
            return _OK
        if command == "s" and re.fullmatch(r"s[0-9A-Fa-f]{4}", line):
            return self._bad(client, line, "channel open") if client.is_open else _OK
        if line == "V":
            return _VERSION_REPLY
        if line == "N":
            return _SERIAL_REPLY
        if line == "F":
            return b"F00\r"
        if line == "Z0" or (command in ("M", "m") and re.fullmatch(r"[Mm][0-9A-Fa-f]{8}", line)):
            return _OK
        if command in _FRAME_RE:
            return self._transmit(client, line)
        return self._bad(client, line, "unsupported command")

    def _transmit(self, client: _Client, line: str) -> bytes:
        if not client.is_open or client.listen_only:
            return self._bad(client, line, "channel not open for sending")
        try:
            msg = parse_frame(line)
        except SlcanLineError as exc:
            return self._bad(client, line, str(exc))
        try:
            self.bus.send(msg)
        except can.CanError as exc:
            return self._bad(client, line, f"bus send failed: {exc}")
        self._broadcast(msg, exclude=client)
        return b"Z\r" if msg.is_extended_id else b"z\r"

    def _bad(self, client: _Client, line: str, reason: str) -> bytes:
        self.bad_line_count += 1
        _log.warning("slcan client %s: rejected %r: %s", client.peer, line, reason)
        return _ERROR


def slcan_client_bus(
    port: int, *, host: str = LOOPBACK_HOST, bitrate: int | None = 500_000
) -> can.BusABC:
    """A python-can slcan bus connected to a :class:`SlcanTcpServer`.

    Blocking (it connects a socket): call it via ``asyncio.to_thread`` or hand
    it to :class:`hal.power_can.driver.CanPowerStage` as a bus factory.
    """
    return can.Bus(
        interface="slcan",
        channel=f"socket://{host}:{port}",
        bitrate=bitrate,
        sleep_after_open=0.0,
        ignore_config=True,
    )


# ---------------------------------------------------------------------------
# Stand-alone simulated module (for a driver in another process)
# ---------------------------------------------------------------------------


async def serve_simulated_module(
    node_id: int,
    plant: Plant,
    capabilities: PowerStageCapabilities,
    *,
    port: int = 0,
    channel: str | None = None,
    ready: asyncio.Future[int] | None = None,
) -> None:
    """Run a :class:`SimulatedPowerModule` behind an slcan server until cancelled.

    ``ready`` (if given) receives the bound port once clients may connect.
    """
    channel = channel or f"power-module-{node_id}-{id(plant):x}"
    module_bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    server_bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    module = SimulatedPowerModule(module_bus, node_id, plant, capabilities)
    server = SlcanTcpServer(server_bus, port=port)
    try:
        await server.start()
        if ready is not None and not ready.done():
            ready.set_result(server.port)
        await module.run()
    finally:
        await server.close()
        module_bus.shutdown()
        server_bus.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hal.power_can.slcan_server``: a simulated module on a TCP port.

    Prints ``PORT <n>`` once ready. The plant is fixed: a battery at
    ``--battery-voltage`` with both contactors closed.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--node-id", type=int, default=1)
    parser.add_argument("--battery-voltage", type=float, default=400.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    plant = Plant(
        battery_voltage_v=args.battery_voltage, contactor_closed=True, ev_dc_contactor_closed=True
    )
    capabilities = PowerStageCapabilities(
        min_voltage_v=150.0,
        max_voltage_v=1000.0,
        max_export_current_a=200.0,
        max_export_power_w=50_000.0,
        max_import_current_a=200.0,
        max_import_power_w=50_000.0,
        bidirectional=True,
    )

    async def _main() -> None:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        ready.add_done_callback(lambda fut: print(f"PORT {fut.result()}", flush=True))
        await serve_simulated_module(args.node_id, plant, capabilities, port=args.port, ready=ready)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
