"""Locks on the relays and doors on the inputs of Modbus RTU relay boards, through pymodbus.

The cheap 4- to 32-channel relay boards (Waveshare "Modbus RTU Relay", Eletechsup R4D3B16
and alike) share one RS485 bus, each at its own unit address. A lock is a relay, which Modbus
calls a coil; a door sensor is a discrete input. Channels are numbered from 1 as printed on
the board; ``first_coil_address`` and ``first_input_address`` say which Modbus address
channel 1 has (0 in Waveshare's V2 protocol). Only the standard function codes are used: 01
read coils, 02 read discrete inputs, 05 write one coil, 0F write several.

The driver ends every pulse itself, not the board: vendors' timed "flash" commands differ
from board to board. ``unlock()`` writes the coil on, and a timer thread writes it off
``pulse_s`` later, so a stalled event loop cannot hold a lock on; ``unlock()`` writes it off
too as it returns or is cancelled (whichever comes first acts, once). A write that gets no
valid answer is sent again (``retries``); an off-write that still fails keeps the lock in
:meth:`ModbusLocker.energised` (it may well be on) and is retried on every poll. Inside the
agent, ``SafeLocks`` sees a lock still energised after its pulse and stops the driver first
(every lock written off, the agent reported unhealthy): the retries on every poll are for the
driver on its own (hw-monitor, tests).

A poll task reads every unit's lock coils (01) and door inputs (02) every
``poll_interval_s``. A lock coil that reads on with no pulse under way (an off-write lost on
the bus, a board that powered up with a relay on) is written off at once, with a warning. A
unit that does not answer (after the retries) is marked offline: its doors become UNKNOWN, a
warning is logged once, the board listeners are told, :meth:`ModbusLocker.healthy` is False,
and an unlock of one of its locks fails at once without a frame sent, until it answers again.

The bus carries one request at a time: each attempt holds a thread lock, released between
attempts, so that a pulse's end waits at most one attempt of another request (one
``timeout_ms`` when a unit is silent). The blocking I/O runs in the default executor.
pymodbus is imported when the driver starts, so a locker on another backend never loads it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from locker_agent.app.ports.hardware import (
    DoorListener,
    DoorSensors,
    HardwareError,
    LockDriver,
    check_unlock_request,
)
from locker_agent.domain.model import DoorState
from locker_agent.hardware.board_listeners import BoardListener, BoardListeners
from locker_agent.hardware.door_tracker import DoorStateTracker

if TYPE_CHECKING:
    from pymodbus.client import ModbusSerialClient
    from pymodbus.pdu import ModbusPDU

logger = logging.getLogger(__name__)

MAX_ADDRESS = 0xFFFF
MAX_UNIT = 247

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
}
REFUSALS = frozenset({1, 2, 3})
"""Exception codes a board answers the same way every time: no retry, a wiring/config fault."""


class Refused(HardwareError):
    """The unit answered with a Modbus exception that a repeat would not change (1-3)."""


@dataclass(eq=False)
class _Pulse:
    """One pulse of one lock; its identity tells it from a later pulse on the same lock."""

    off_failed: bool = False
    """Its off-write got no valid answer: the lock may be on; every poll tries again."""
    ended: bool = False
    """Ended (on time, by stop() or by force_off()): no on-write may be sent for it any more.
    Set and read under the compartment's ``_ending`` lock, which every on-write holds."""
    timer: threading.Timer | None = None
    """Ends the pulse on its own thread."""


class ModbusLocker(LockDriver, DoorSensors):
    """Relays (locks) and digital inputs (door sensors) of Modbus RTU boards on one bus.

    ``locks`` and ``sensors`` map compartment ids to ``(unit, channel)``: the board's Modbus
    address (1-247) and its relay or input number, from 1. ``door_closed_when``: what a
    shut door's input reads, "on" (a contact that closes when the door is shut) or "off".
    """

    def __init__(
        self,
        locks: Mapping[str, tuple[int, int]],
        sensors: Mapping[str, tuple[int, int]],
        *,
        port: str = "/dev/ttyUSB0",
        baudrate: int = 9600,
        parity: Literal["N", "E", "O"] = "N",
        stopbits: Literal[1, 2] = 1,
        timeout_ms: int = 200,
        retries: int = 2,
        inter_frame_gap_ms: int = 5,
        poll_interval_s: float = 0.5,
        first_coil_address: int = 0,
        first_input_address: int = 0,
        door_closed_when: Literal["on", "off"] = "on",
    ) -> None:
        if not locks:
            raise ValueError("a Modbus locker needs at least one lock")
        self._locks = _check_channels(locks, "relay", first_coil_address)
        self._sensors = _check_channels(sensors, "input", first_input_address)
        if not timeout_ms > 0:
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s!r}")
        if door_closed_when not in ("on", "off"):
            raise ValueError(f"door_closed_when must be 'on' or 'off', got {door_closed_when!r}")
        self.port = port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.timeout_s = timeout_ms / 1000
        self.retries = retries
        # Modbus RTU: 3.5 characters of silence between frames, 1.75 ms above 19200 baud
        character_s = (1 + 8 + (parity != "N") + stopbits) / baudrate
        minimum_gap_s = 3.5 * character_s if baudrate <= 19200 else 0.00175
        self.inter_frame_gap_s = max(inter_frame_gap_ms / 1000, minimum_gap_s)
        self.poll_interval_s = poll_interval_s
        self.first_coil_address = first_coil_address
        self.first_input_address = first_input_address
        self.door_closed_when = door_closed_when
        self.units: tuple[int, ...] = tuple(
            sorted({u for u, _ in self._locks.values()} | {u for u, _ in self._sensors.values()})
        )
        self._doors = DoorStateTracker(self._sensors)
        self._energised: dict[str, _Pulse] = {}
        self._state_lock = threading.Lock()  # guards _energised and _ended_at
        self._ended_at: dict[str, float] = {}
        """When each lock's last pulse was forgotten (monotonic): a read begun earlier may
        still show it on."""
        self._ending = {cid: threading.Lock() for cid in self._locks}
        """One ending of a pulse at a time per lock: the timer's, unlock()'s, a poll's."""
        self._offline: set[int] = set()
        self._found_on: set[str] = set()
        """Locks read on with no pulse under way, and not read off since."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: ModbusSerialClient | None = None
        self._io_lock = threading.Lock()  # held by the thread doing one attempt on the bus
        self._last_io = 0.0  # monotonic end of the last attempt; under _io_lock
        self._pulse_locks: dict[str, asyncio.Lock] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._boards = BoardListeners(
            [(cid, u) for cid, (u, _) in self._locks.items()]
            + [(cid, u) for cid, (u, _) in self._sensors.items()]
        )

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._loop is not None and not self._loop.is_closed() and self._client is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._client is not None:
            return
        if self._loop is not None:
            await self.stop()
        self._client = await loop.run_in_executor(None, self._open_client)
        with self._state_lock:
            self._energised.clear()
        self._offline.clear()
        self._pulse_locks = {cid: asyncio.Lock() for cid in self._locks}
        self._loop = loop
        for unit in self._lock_units():  # the safe state: every lock off
            try:
                await loop.run_in_executor(None, self._write_all_off, unit)
            except HardwareError as exc:
                self._board_failed(unit, exc)
        await self._poll_once()
        self._poll_task = loop.create_task(self._poll_forever(), name="modbus-poll")
        logger.info("Modbus locker started on %s (units %s)", self.port, list(self.units))

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        task, self._poll_task = self._poll_task, None
        if task is not None and not task.get_loop().is_closed():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(task, return_exceptions=True)
        client = self._client
        if client is not None:
            running = asyncio.get_running_loop()
            await running.run_in_executor(None, self._all_off_quietly, self._offline.copy())
            self._forget_all()
            self._client = None
            await running.run_in_executor(None, self._close_client, client)
            if loop is not None:
                logger.info("Modbus locker on %s stopped", self.port)
        self._forget_all()

    def healthy(self) -> bool:
        """Started, and every unit answers."""
        return self.started and not self._offline

    def offline_boards(self) -> set[int]:
        """Units that do not answer."""
        return set(self._offline)

    def subscribe_boards(self, listener: BoardListener) -> None:
        """Call ``listener(unit, online, compartments)`` when a unit drops off or comes back."""
        self._boards.subscribe(listener)

    # -- LockDriver -------------------------------------------------------------------------

    async def unlock(self, compartment_id: str, pulse_s: float) -> None:
        check_unlock_request(compartment_id, pulse_s, known=self._locks, started=self.started)
        lock = self._pulse_locks[compartment_id]
        async with lock:
            loop = self._loop
            if self._pulse_locks.get(compartment_id) is not lock or loop is None:
                raise HardwareError(
                    "lock driver stopped before the pulse", compartment_id=compartment_id
                )
            refusal = self.cannot_pulse(compartment_id)
            if refusal is not None:
                raise HardwareError(refusal, compartment_id=compartment_id)
            pulse = _Pulse()
            with self._state_lock:
                self._energised[compartment_id] = pulse
            failure: HardwareError | None = None
            try:
                try:
                    await loop.run_in_executor(
                        None, self._switch_on, compartment_id, pulse, pulse_s
                    )
                except HardwareError as exc:
                    failure = exc
                    raise HardwareError(
                        f"unlock of {compartment_id} failed: {exc}", compartment_id=compartment_id
                    ) from exc
                await asyncio.sleep(pulse_s)
            finally:
                if pulse.timer is not None:
                    pulse.timer.cancel()
                if failure is None:  # on, or its write cut short by a cancel: off it goes
                    await loop.run_in_executor(None, self._end_pulse, compartment_id, pulse)
                else:
                    if not isinstance(failure, Refused):
                        # the on-write may have landed with its answer lost: one try to undo
                        # it now; the poll's read-back switches off what is left on
                        await loop.run_in_executor(None, self._undo, compartment_id)
                    self._forget(compartment_id, pulse)

    def cannot_pulse(self, compartment_id: str) -> str | None:
        lock = self._locks.get(compartment_id)
        if lock is not None and lock[0] in self._offline:
            return f"Modbus unit {lock[0]} is not answering; not pulsing {compartment_id}"
        return None

    def energised(self) -> frozenset[str]:
        return frozenset(self._energised.copy())

    def force_off(self) -> None:
        """Write every lock coil off, on the calling thread; never raises.

        A unit that does not take it keeps its pulses in :meth:`energised`, and the poll
        tries them again.
        """
        try:
            self._end_all_pulses()
            for unit in self._lock_units():
                with self._state_lock:
                    pulses = {c: p for c, p in self._energised.items()
                              if self._locks[c][0] == unit}
                try:
                    self._write_all_off(unit)
                except Exception as exc:
                    logger.error("could not force the locks of Modbus unit %d off: %s", unit, exc)
                    for pulse in pulses.values():
                        pulse.off_failed = True
                    continue
                for cid, pulse in pulses.items():
                    self._forget(cid, pulse)
        except Exception:
            logger.exception("forcing the Modbus locks off failed")

    # -- DoorSensors ------------------------------------------------------------------------

    def read(self) -> dict[str, DoorState]:
        return self._doors.snapshot()

    def subscribe(self, listener: DoorListener) -> None:
        self._doors.subscribe(listener)

    # -- pulses -----------------------------------------------------------------------------

    def _switch_on(self, compartment_id: str, pulse: _Pulse, pulse_s: float) -> None:
        """Write the lock's coil on, and start the timer that ends the pulse, on one thread:
        the moment the board says it is on, the end is on its way, whatever the event loop
        is doing."""
        unit, channel = self._locks[compartment_id]
        tries = self.retries + 1
        for attempt in range(tries):
            # each attempt under the lock the ending takes: an on-write can never land after
            # the pulse was ended (stop() or force_off() while this one was being retried)
            with self._ending[compartment_id]:
                if pulse.ended:
                    raise HardwareError(
                        f"the pulse of {compartment_id} was ended before its lock went on")
                try:
                    self._write_coil(unit, channel, True, attempts=1)
                except Refused:
                    raise
                except HardwareError:
                    if attempt + 1 == tries:
                        raise
                    continue
                pulse.timer = threading.Timer(pulse_s, self._end_pulse, (compartment_id, pulse))
                pulse.timer.daemon = True
                pulse.timer.start()
                return

    def _undo(self, compartment_id: str) -> None:
        """One off-write for an on-write that failed; quiet, since it may fail the same way."""
        unit, channel = self._locks[compartment_id]
        try:
            self._write_coil(unit, channel, False, attempts=1)
        except HardwareError as exc:
            logger.debug("undoing the failed unlock of %s: %s", compartment_id, exc)

    def _end_pulse(self, compartment_id: str, pulse: _Pulse) -> None:
        """Write the lock of ``pulse`` off if it is still on record (from any thread)."""
        try:
            with self._ending[compartment_id]:
                pulse.ended = True
                if self._energised.get(compartment_id) is not pulse:
                    return  # ended already, or forgotten by stop() or force_off()
                unit, channel = self._locks[compartment_id]
                try:
                    self._write_coil(unit, channel, False)
                except HardwareError as exc:
                    if not pulse.off_failed:
                        logger.error(
                            "could not switch the lock of %s off (Modbus unit %d relay %d): %s;"
                            " trying again on every poll", compartment_id, unit, channel, exc,
                        )
                    pulse.off_failed = True
                    return
                self._forget(compartment_id, pulse)
        except Exception:
            logger.exception("ending the pulse of %s failed", compartment_id)

    def _forget(self, compartment_id: str, pulse: _Pulse) -> None:
        pulse.ended = True
        with self._state_lock:
            if self._energised.get(compartment_id) is pulse:
                del self._energised[compartment_id]
                self._ended_at[compartment_id] = time.monotonic()

    def _forget_all(self) -> None:
        with self._state_lock:
            now = time.monotonic()
            for compartment_id in self._energised:
                self._ended_at[compartment_id] = now
            self._energised.clear()

    def _end_all_pulses(self) -> None:
        """Mark every pulse ended, after any on-write in flight (blocks for at most one)."""
        with self._state_lock:
            pulses = list(self._energised.items())
        for compartment_id, pulse in pulses:
            with self._ending[compartment_id]:
                pulse.ended = True

    def _all_off_quietly(self, skip: set[int]) -> None:
        """Every lock off on every unit but ``skip``; failures are logged (stopping)."""
        self._end_all_pulses()
        for unit in self._lock_units():
            if unit in skip:
                continue
            try:
                self._write_all_off(unit)
            except HardwareError as exc:
                logger.error("could not switch the locks of Modbus unit %d off: %s", unit, exc)

    # -- polling ----------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            await self._poll_once()

    async def _poll_once(self) -> None:
        loop = self._loop
        for unit in self.units:
            if loop is None or self._loop is not loop:
                return
            read_at = time.monotonic()
            try:
                coils, inputs = await loop.run_in_executor(None, self._read_unit, unit)
            except HardwareError as exc:
                if self._loop is loop:
                    self._board_failed(unit, exc)
                continue
            if self._loop is not loop:
                return
            self._board_answered(unit, inputs)
            await self._read_back(loop, unit, coils, read_at)

    async def _read_back(
        self, loop: asyncio.AbstractEventLoop, unit: int, coils: Mapping[int, bool],
        read_at: float,
    ) -> None:
        """Switch off what should be off: a failed off-write, a relay found on unasked."""
        for compartment_id, (u, channel) in self._locks.items():
            lock = self._pulse_locks.get(compartment_id)
            if u != unit or lock is None or lock.locked():
                continue  # a pulse under way or waiting: it ends it itself
            pulse = self._energised.get(compartment_id)
            if pulse is not None:
                if not pulse.off_failed:
                    continue
                async with lock:  # free: acquired at once, keeps new pulses off meanwhile
                    await loop.run_in_executor(None, self._end_pulse, compartment_id, pulse)
                if self._energised.get(compartment_id) is not pulse:
                    logger.info("the lock of %s is off at last", compartment_id)
                continue
            if not coils.get(channel) or self._ended_at.get(compartment_id, -1.0) >= read_at:
                self._found_on.discard(compartment_id)
                continue
            # said once until it reads off: something that keeps switching it on (a second
            # master, a board set to restore its relays) must not flood the log
            say = logger.debug if compartment_id in self._found_on else logger.warning
            self._found_on.add(compartment_id)
            say("the lock of %s (Modbus unit %d relay %d) reads energised with no pulse under "
                "way; switching it off", compartment_id, unit, channel)
            async with lock:
                try:
                    await loop.run_in_executor(None, self._write_coil, unit, channel, False)
                except HardwareError as exc:
                    say("could not switch the lock of %s off: %s", compartment_id, exc)

    def _board_failed(self, unit: int, exc: HardwareError) -> None:
        went_offline = unit not in self._offline
        if went_offline:
            self._offline.add(unit)
            logger.warning("Modbus unit %d went offline: %s", unit, exc)
        for cid, (u, _) in self._sensors.items():
            if u == unit:
                self._doors.update(cid, DoorState.UNKNOWN, notify=self.started)
        if went_offline:
            self._boards.tell(unit, online=False)

    def _board_answered(self, unit: int, inputs: Mapping[int, bool]) -> None:
        came_back = unit in self._offline
        if came_back:
            self._offline.discard(unit)
            logger.info("Modbus unit %d is back online", unit)
        closed_reads = self.door_closed_when == "on"
        for cid, (u, channel) in self._sensors.items():
            if u == unit:
                closed = inputs[channel] == closed_reads
                self._doors.update(cid, DoorState.CLOSED if closed else DoorState.OPEN)
        if came_back:
            self._boards.tell(unit, online=True)

    # -- requests (blocking: executor threads, the pulse timer, force_off's caller) --------

    def _lock_units(self) -> list[int]:
        return sorted({u for u, _ in self._locks.values()})

    def _read_unit(self, unit: int) -> tuple[dict[int, bool], dict[int, bool]]:
        """The unit's lock coils and door inputs, by channel."""
        coils = self._read_bits(unit, "coils", self._channels_on(self._locks, unit))
        inputs = self._read_bits(unit, "inputs", self._channels_on(self._sensors, unit))
        return coils, inputs

    @staticmethod
    def _channels_on(mapping: Mapping[str, tuple[int, int]], unit: int) -> list[int]:
        return sorted(channel for u, channel in mapping.values() if u == unit)

    def _read_bits(
        self, unit: int, kind: Literal["coils", "inputs"], channels: list[int]
    ) -> dict[int, bool]:
        if not channels:
            return {}
        first, count = channels[0], channels[-1] - channels[0] + 1
        if kind == "coils":
            address = self.first_coil_address + first - 1
            what = f"read {_span('coil', address, count)} ({_span('relay', first, count)})"
        else:
            address = self.first_input_address + first - 1
            what = f"read {_span('input', address, count)} ({_span('input', first, count)})"

        def request(client: ModbusSerialClient) -> ModbusPDU:
            if kind == "coils":
                return client.read_coils(address, count=count, device_id=unit)
            return client.read_discrete_inputs(address, count=count, device_id=unit)

        def valid(reply: ModbusPDU) -> bool:
            return len(reply.bits) >= count

        reply = self._request(unit, what, request, valid)
        return {channel: bool(reply.bits[channel - first]) for channel in channels}

    def _write_coil(
        self, unit: int, channel: int, on: bool, *, attempts: int | None = None
    ) -> None:
        address = self.first_coil_address + channel - 1
        what = f"write coil {address} (relay {channel}) {'on' if on else 'off'}"

        def request(client: ModbusSerialClient) -> ModbusPDU:
            return client.write_coil(address, on, device_id=unit)

        def valid(reply: ModbusPDU) -> bool:  # function 05 echoes the request
            return reply.address == address and reply.bits[:1] == [on]

        self._request(unit, what, request, valid, attempts=attempts)

    def _write_all_off(self, unit: int) -> None:
        """Every lock coil of ``unit`` off, a run of neighbouring relays per request (0F)."""
        channels = self._channels_on(self._locks, unit)
        for _, run in itertools.groupby(enumerate(channels), lambda pair: pair[1] - pair[0]):
            relays = [channel for _, channel in run]
            address = self.first_coil_address + relays[0] - 1
            count = len(relays)
            what = f"write {_span('coil', address, count)} off ({_span('relay', relays[0], count)})"

            def request(client: ModbusSerialClient, address: int = address,
                        count: int = count) -> ModbusPDU:
                return client.write_coils(address, [False] * count, device_id=unit)

            def valid(reply: ModbusPDU, address: int = address, count: int = count) -> bool:
                return reply.address == address and reply.count == count

            self._request(unit, what, request, valid)

    def _request(
        self,
        unit: int,
        what: str,
        request: Callable[[ModbusSerialClient], ModbusPDU],
        valid: Callable[[ModbusPDU], bool],
        *,
        attempts: int | None = None,
    ) -> ModbusPDU:
        """One request to ``unit``, sent again until it gets a valid answer; HardwareError if
        none comes, or if the unit refuses it (a Modbus exception reply)."""
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        tries = self.retries + 1 if attempts is None else attempts
        problem = "no reply"
        for attempt in range(tries):
            with self._io_lock:
                client = self._client
                if client is None:
                    raise HardwareError(f"Modbus port {self.port} is closed")
                wait = self._last_io + self.inter_frame_gap_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    reply = request(client)
                except ConnectionException as exc:
                    reply = None
                    problem = f"port failed: {exc}"
                except ModbusIOException:  # no answer in time, or one from another unit
                    reply = None
                    problem = "no reply"
                except ModbusException as exc:
                    reply = None
                    problem = str(exc).strip() or type(exc).__name__
                except Exception as exc:  # serial and OS errors pymodbus lets through
                    reply = None
                    problem = f"port failed: {exc}"
                finally:
                    self._last_io = time.monotonic()
            if reply is not None:
                if reply.isError():
                    code = getattr(reply, "exception_code", 0)
                    problem = f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
                    if code in REFUSALS:
                        raise Refused(
                            f"Modbus unit {unit} refused {what}: {problem}; check the channel "
                            "numbers and first_coil_address / first_input_address"
                        )
                elif valid(reply):
                    return reply
                else:
                    problem = f"an answer that does not match: {reply}"
            logger.debug("unit %d, %s, attempt %d of %d: %s", unit, what, attempt + 1, tries,
                         problem)
        raise HardwareError(
            f"Modbus unit {unit} did not answer {what} after {tries} attempt(s): {problem}"
        )

    # -- the port ---------------------------------------------------------------------------

    def _open_client(self) -> ModbusSerialClient:
        from pymodbus.client import ModbusSerialClient

        client = ModbusSerialClient(
            self.port,
            baudrate=self.baudrate,
            bytesize=8,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=self.timeout_s,
            retries=0,  # our own loop retries, and lets go of the bus between attempts
        )
        if not client.connect():
            if not os.path.exists(self.port):
                reason = "no such device"
            else:
                reason = "in use by another process, or not permitted (the dialout group?)"
            raise HardwareError(f"cannot open Modbus port {self.port}: {reason}")
        return client

    def _close_client(self, client: ModbusSerialClient) -> None:
        with self._io_lock:
            try:
                client.close()  # type: ignore[no-untyped-call]
            except Exception:
                logger.exception("closing Modbus port %s failed", self.port)


def _span(kind: str, first: int, count: int) -> str:
    """``coil 3`` or ``coils 3-5``."""
    return f"{kind} {first}" if count == 1 else f"{kind}s {first}-{first + count - 1}"


def _check_channels(
    channels: Mapping[str, tuple[int, int]], kind: str, first_address: int
) -> dict[str, tuple[int, int]]:
    """Validate ``(unit, channel)`` pairs; two compartments never share one."""
    used: dict[tuple[int, int], str] = {}
    for cid, (unit, channel) in channels.items():
        if not 1 <= unit <= MAX_UNIT:
            raise ValueError(f"{cid}: Modbus unit must be 1-{MAX_UNIT}, got {unit}")
        if channel < 1 or first_address + channel - 1 > MAX_ADDRESS:
            raise ValueError(f"{cid}: {kind} {channel} is outside Modbus's addresses")
        if (unit, channel) in used:
            raise ValueError(f"{cid} and {used[unit, channel]} share unit {unit} {kind} {channel}")
        used[unit, channel] = cid
    return dict(channels)
