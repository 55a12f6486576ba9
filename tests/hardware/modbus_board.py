"""Modbus RTU relay boards on an emulated RS485 line: a real pymodbus server on a pty.

Written from the vendors' documents (Waveshare "Modbus RTU Relay" wiki, Eletechsup R4D3B16
manual), not from the driver: each board is a Modbus unit whose relays are coils at
addresses ``first_coil_address + channel - 1`` (function 01 reads them, 05 writes one,
0F several) and whose opto-isolated inputs are discrete inputs (function 02). A request for a
unit that is not on the line gets no answer at all.

The physical world is part of the double: relay N holds the lock of the door wired to
input N. While the relay is energised the lock lets go and the sprung door swings open (unless
jammed); a person shuts it ``close_after_s`` later, if set. A shut door closes the switch on
its input, so the input reads on (``closed_reads_on=False`` for switches wired the other way).

pymodbus's serial server opens a port by name, so the line is two pseudo-terminals joined by
a thread (what ``socat pty,raw pty,raw`` does): the server opens one, the driver the other
(:attr:`ModbusLine.port`). Pulling the plug (:meth:`ModbusLine.unplug`) drops every byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pty
import select
import threading
import time
import tty
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

COIL_FUNCTIONS = frozenset({1, 5, 15})


@dataclass
class RelayBoard:
    """One board: its relays and the doors on its inputs, channels numbered from 1."""

    unit: int
    relays: int = 16
    inputs: int = 16
    energised: dict[int, bool] = field(default_factory=dict)
    door_open: dict[int, bool] = field(default_factory=dict)
    jammed: set[int] = field(default_factory=set)
    silent: bool = False
    ignore_next: int = 0
    """Requests still to be ignored, as a board stuck busy does."""


@dataclass(frozen=True)
class Request:
    at: float
    """time.monotonic() when the server decoded it."""
    unit: int
    function_code: int
    address: int


@dataclass(frozen=True)
class CoilChange:
    at: float
    unit: int
    channel: int
    on: bool


class NullModem:
    """Two pseudo-terminals joined by a thread: bytes written to one come out of the other."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._masters: list[int] = []
        names = []
        for _ in range(2):
            master, slave = pty.openpty()
            tty.setraw(slave)
            self._fds += [master, slave]
            self._masters.append(master)
            names.append(os.ttyname(slave))
        self.board_port, self.driver_port = names
        self.unplugged = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._carry, name="null-modem", daemon=True)
        self._thread.start()

    def _carry(self) -> None:
        first, second = self._masters
        while not self._stop.is_set():
            ready, _, _ = select.select(self._masters, [], [], 0.02)
            for fd in ready:
                try:
                    data = os.read(fd, 1024)
                except OSError:
                    continue
                if not self.unplugged:
                    os.write(second if fd == first else first, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class ModbusLine:
    """Relay boards at ``units`` on one emulated line; use as a context manager."""

    def __init__(
        self,
        units: Iterable[int] = (1,),
        *,
        relays: int = 16,
        inputs: int = 16,
        first_coil_address: int = 0,
        first_input_address: int = 0,
        closed_reads_on: bool = True,
        spring_open: bool = True,
        close_after_s: float | None = None,
    ) -> None:
        self.boards = {u: RelayBoard(u, relays, inputs) for u in units}
        self.first_coil_address = first_coil_address
        self.first_input_address = first_input_address
        self.closed_reads_on = closed_reads_on
        self.spring_open = spring_open
        self.close_after_s = close_after_s
        self.requests: list[Request] = []
        self.coil_changes: list[CoilChange] = []
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._reading = 1
        """How many bits the request being served reads (pymodbus does not tell _access)."""
        self._cable = NullModem()
        self.port = self._cable.driver_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="modbus-line",
                                        daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(5)

    # -- the world ------------------------------------------------------------------------

    def set_door(self, unit: int, channel: int, is_open: bool) -> None:
        """A person opens or shuts the door on ``channel``'s input."""
        with self._lock:
            self.boards[unit].door_open[channel] = is_open

    def door_open(self, unit: int, channel: int) -> bool:
        with self._lock:
            return self.boards[unit].door_open.get(channel, False)

    def jam(self, unit: int, channel: int) -> None:
        """The lock's relay still clicks, but its latch never lets the door go."""
        with self._lock:
            self.boards[unit].jammed.add(channel)

    def coil(self, unit: int, channel: int) -> bool:
        with self._lock:
            return self.boards[unit].energised.get(channel, False)

    def set_coil(self, unit: int, channel: int, on: bool) -> None:
        """Switch a relay behind the driver's back (a board powered up with it on)."""
        with self._lock:
            self._switch(self.boards[unit], channel, on)

    def on_intervals(self, unit: int, channel: int) -> list[tuple[float, float | None]]:
        """(on, off) monotonic times of every stretch the relay was energised; None: still on."""
        intervals: list[tuple[float, float | None]] = []
        with self._lock:
            for change in self.coil_changes:
                if (change.unit, change.channel) != (unit, channel):
                    continue
                if change.on:
                    intervals.append((change.at, None))
                elif intervals and intervals[-1][1] is None:
                    intervals[-1] = (intervals[-1][0], change.at)
        return intervals

    # -- faults -----------------------------------------------------------------------------

    def silent(self, unit: int, silent: bool = True) -> None:
        """The board stops answering (its power or its A/B wires gone), or comes back."""
        with self._lock:
            self.boards[unit].silent = silent

    def ignore_next(self, unit: int, n: int) -> None:
        """The board ignores its next ``n`` requests (stuck busy, or the frames were lost)."""
        with self._lock:
            self.boards[unit].ignore_next = n

    def unplug(self, unplugged: bool = True) -> None:
        """The RS485 line is cut: nothing reaches any board, nothing comes back."""
        self._cable.unplugged = unplugged

    # -- inspection ---------------------------------------------------------------------------

    def functions(self, unit: int | None = None) -> list[int]:
        with self._lock:
            return [r.function_code for r in self.requests if unit in (None, r.unit)]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)
        self._loop.close()
        self._cable.close()

    def __enter__(self) -> ModbusLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the boards ---------------------------------------------------------------------------

    async def _serve(self) -> ModbusSerialServer:
        devices = []
        for unit, board in self.boards.items():
            coils = _bit_block(self.first_coil_address + board.relays)
            inputs = _bit_block(self.first_input_address + board.inputs)
            registers = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
            devices.append(SimDevice(
                id=unit, simdata=([coils], [inputs], registers, list(registers)),
                action=functools.partial(self._access, unit),
            ))
        server = ModbusSerialServer(
            devices, port=self._cable.board_port, baudrate=9600, trace_pdu=self._heard,
        )
        await server.serve_forever(background=True)
        return server

    def _heard(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """Every request the server decodes; one the board would not answer is dropped."""
        if sending:
            return pdu
        with self._lock:
            self.requests.append(
                Request(time.monotonic(), pdu.dev_id, pdu.function_code, pdu.address)
            )
            board = self.boards.get(pdu.dev_id)
            if board is None or board.silent:
                return cast(ModbusPDU, None)
            if board.ignore_next > 0:
                board.ignore_next -= 1
                return cast(ModbusPDU, None)
            self._reading = pdu.count  # the line serves one request at a time
        return pdu

    async def _access(
        self, unit: int, function_code: int, start_register: int, address: int, _count: int,
        registers: list[int], values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Serve one access from the board's state (pymodbus packs bits 16 to a register)."""
        with self._lock:
            board = self.boards[unit]
            coils = function_code in COIL_FUNCTIONS
            first = self.first_coil_address if coils else self.first_input_address
            count = len(values) if values is not None else self._reading
            channels = range(address - first + 1, address - first + 1 + count)
            if channels.start < 1 or channels.stop - 1 > (board.relays if coils else board.inputs):
                return ExcCodes.ILLEGAL_ADDRESS  # as the boards answer outside their channels
            if values is not None:  # 05 or 0F
                for channel, value in zip(channels, values, strict=True):
                    self._switch(board, channel, bool(value))
            if coils:
                def level(channel: int) -> bool:
                    return board.energised.get(channel, False)
            else:
                def level(channel: int) -> bool:
                    return board.door_open.get(channel, False) != self.closed_reads_on
            for index in range(len(registers) - 1):  # the last one marks the block's end
                bits = 0
                for bit in range(16):
                    channel = (start_register + index) * 16 + bit - first + 1
                    if channel >= 1 and level(channel):
                        bits |= 1 << bit
                registers[index] = bits
        return None

    def _switch(self, board: RelayBoard, channel: int, on: bool) -> None:
        """Under the lock: a relay changes; an energised lock lets its sprung door open."""
        if board.energised.get(channel, False) == on:
            return
        board.energised[channel] = on
        self.coil_changes.append(CoilChange(time.monotonic(), board.unit, channel, on))
        if on and self.spring_open and channel not in board.jammed:
            board.door_open[channel] = True
            if self.close_after_s is not None:
                timer = threading.Timer(
                    self.close_after_s, self.set_door, (board.unit, channel, False)
                )
                timer.daemon = True
                self._timers.append(timer)
                timer.start()


def _bit_block(size: int) -> SimData:
    """Bits at addresses 0 to ``size`` - 1, rounded up to whole registers."""
    return SimData(0, count=-(-size // 16) * 16, values=False, datatype=DataType.BITS)
