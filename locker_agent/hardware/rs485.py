"""Locks and door sensors of Kerong KR-CU16 (and compatible) boards on one RS485 bus.

One bus carries one request at a time: every exchange holds an asyncio lock, and the blocking
serial I/O runs in the default executor under a thread lock (so closing the port never races
a read still running in a thread after its awaiting task was cancelled). Before each request
the input buffer is flushed and an inter-frame gap is kept; a bad or absent reply is retried.

The board times the unlock pulse itself. With ``set_unlock_time`` (off by default: the
frame's byte order is not confirmed on a real board, see docs/hardware.md) ``start()`` sends
each board its unlock time (``0x37``) from ``unlock_pulse_s`` and requires a valid status
reply; a board that does not confirm it is refused every unlock, since its pulse length is
then unknown (a swapped byte order would turn 0.5 s into 128 s). Without it, each board keeps
its own factory unlock time.

One unlock frame per opening, never resent. The protocol cannot tell "the board did not hear
the frame" from "the board pulsed and its answer was lost", so a resend could pulse a lock
twice (or, with retries, three times). Whether the unlock worked is judged from the door
sensor: the board is polled fast (``fast_poll_interval_s``) for ``door_watch_s`` after the
frame, so a door open for a fraction of a second is still seen. A board that answered nothing
valid is asked for its status once the pulse is over: if it does not answer that either, the
unlock fails, naming the board's error (no reply, bad checksum, short frame). Some boards
never answer ``0x31`` (``answers_unlock = False``): the driver then does not wait for a reply.
``unlock()`` keeps the LockDriver contract: it returns once the pulse is over, and
``energised()`` reports the compartment in that window.

A poll task reads every board's status (``0x30``) every ``poll_interval_s``. A board that does
not answer (after the retries) is marked offline: its doors become UNKNOWN, a warning is
logged once, and :meth:`Rs485Locker.healthy` is False until it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from locker_agent.app.ports.hardware import (
    MAX_PULSE_S,
    DoorListener,
    DoorSensors,
    HardwareError,
    LockDriver,
    check_unlock_request,
)
from locker_agent.domain.model import DoorState
from locker_agent.hardware import kerong
from locker_agent.hardware.board_listeners import BoardListener, BoardListeners
from locker_agent.hardware.door_tracker import DoorStateTracker

logger = logging.getLogger(__name__)

MIN_INTER_FRAME_GAP_MS = 5
"""At least 3.5 character times at 9600 baud; smaller configured gaps are raised to this."""


OFFLINE_POLL_EVERY = 4
"""A board that stopped answering is asked again every 4th poll, with one attempt each time."""


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the driver uses."""

    def write(self, data: bytes, /) -> int | None: ...

    def read(self, size: int = 1, /) -> bytes: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


SerialFactory = Callable[..., SerialPort]
"""Called like ``serial.Serial(port=..., baudrate=..., bytesize=8, parity="N", stopbits=1,
timeout=..., write_timeout=...)``."""


class NoValidReply(HardwareError):
    """The board sent nothing, or nothing that reads as its status frame."""

    def __init__(self, message: str, *, problem: str) -> None:
        super().__init__(message)
        self.problem = problem
        """What was wrong, for people: "no reply within 200 ms", "bad checksum: ..."."""


def _default_serial_factory(**kwargs: Any) -> SerialPort:
    import serial  # type: ignore[import-untyped]

    port: SerialPort = serial.Serial(**kwargs)
    return port


class Rs485Locker(LockDriver, DoorSensors):
    """Kerong-protocol lock boards on one RS485 bus, as a LockDriver and DoorSensors."""

    def __init__(
        self,
        channels: Mapping[str, tuple[int, int]],
        *,
        port: str = "/dev/ttyUSB0",
        baudrate: int = 19200,
        timeout_ms: int = 200,
        retries: int = 2,
        inter_frame_gap_ms: int = MIN_INTER_FRAME_GAP_MS,
        poll_interval_s: float = 0.5,
        lock_bit_open_when_set: bool = False,
        unlock_pulse_s: float = 0.5,
        set_unlock_time: bool = False,
        answers_unlock: bool = True,
        fast_poll_interval_s: float = 0.05,
        door_watch_s: float = 5.0,
        serial_factory: SerialFactory | None = None,
    ) -> None:
        if not channels:
            raise ValueError("an RS485 locker needs at least one compartment")
        self._channels: dict[str, tuple[int, int]] = {}
        used: dict[tuple[int, int], str] = {}
        for cid, (board, channel) in channels.items():
            index = kerong.channel_to_index(channel)
            kerong.address(board, index)  # validates the board number
            if (board, index) in used:
                raise ValueError(
                    f"{cid} and {used[board, index]} share board {board} channel {channel}"
                )
            used[board, index] = cid
            self._channels[cid] = (board, index)
        if not timeout_ms > 0:
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s!r}")
        if not unlock_pulse_s > 0:
            raise ValueError(f"unlock_pulse_s must be > 0, got {unlock_pulse_s!r}")
        if not fast_poll_interval_s > 0:
            raise ValueError(f"fast_poll_interval_s must be > 0, got {fast_poll_interval_s!r}")
        if door_watch_s < 0:
            raise ValueError(f"door_watch_s must be >= 0, got {door_watch_s!r}")
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_ms / 1000
        self.retries = retries
        self.inter_frame_gap_s = max(inter_frame_gap_ms, MIN_INTER_FRAME_GAP_MS) / 1000
        self.poll_interval_s = poll_interval_s
        self.lock_bit_open_when_set = lock_bit_open_when_set
        self.unlock_pulse_s = min(unlock_pulse_s, MAX_PULSE_S)
        self.set_unlock_time = set_unlock_time
        self.answers_unlock = answers_unlock
        self.fast_poll_interval_s = fast_poll_interval_s
        self.door_watch_s = door_watch_s
        self._unconfirmed: set[int] = set()
        """Boards told their unlock time that did not confirm it: no unlocks for them."""
        self._serial_factory: SerialFactory = serial_factory or _default_serial_factory
        self.boards: tuple[int, ...] = tuple(sorted({b for b, _ in self._channels.values()}))
        self._doors = DoorStateTracker(self._channels)
        self._energised: dict[str, object] = {}
        self._offline: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serial: SerialPort | None = None
        self._io_lock = threading.Lock()  # held by the thread doing serial I/O
        self._last_io = 0.0  # monotonic end of the last exchange; under _io_lock
        self._bus_lock = asyncio.Lock()
        self._pulse_locks: dict[str, asyncio.Lock] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._watch_until: dict[int, float] = {}
        """Board -> loop time until which it is polled fast (a door just unlocked on it)."""
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._awaiting: dict[int, set[str]] = {}
        """Board -> compartments unlocked on it whose door has not read open since."""
        self._offline_polled_at: dict[int, float] = {}
        self._answered_at: dict[int, float] = {}
        """Board -> loop time of its last valid status frame."""
        self._boards = BoardListeners((cid, b) for cid, (b, _) in self._channels.items())

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._loop is not None and not self._loop.is_closed() and self._serial is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._serial is not None:
            return
        if self._loop is not None:
            await self.stop()
        try:
            serial_port = await loop.run_in_executor(None, self._open_port)
        except Exception as exc:
            raise HardwareError(f"cannot open RS485 port {self.port}: {exc}") from exc
        self._serial = serial_port
        self._energised.clear()
        self._offline.clear()
        self._bus_lock = asyncio.Lock()
        self._pulse_locks = {cid: asyncio.Lock() for cid in self._channels}
        self._loop = loop
        self._unconfirmed.clear()
        for board in self.boards if self.set_unlock_time else ():
            try:
                await self._exchange(
                    board, kerong.set_unlock_time_frame(board, self.unlock_pulse_s)
                )
            except HardwareError as exc:
                self._unconfirmed.add(board)
                logger.error(
                    "board %d did not confirm its unlock time (0x37): %s; its locks will not "
                    "be pulsed (check the board, or set hardware.rs485.set_unlock_time = false)",
                    board, exc,
                )
        await self._poll_once()
        self._poll_task = loop.create_task(self._poll_forever(), name="rs485-poll")
        logger.info("RS485 locker started on %s (boards %s)", self.port, list(self.boards))

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        self._energised.clear()
        task, self._poll_task = self._poll_task, None
        tasks = [t for t in (task, *self._watchers.values()) if t is not None]
        self._watchers.clear()
        self._watch_until.clear()
        self._awaiting.clear()
        for task in tasks:
            if not task.get_loop().is_closed():
                task.cancel()
                if task.get_loop() is asyncio.get_running_loop():
                    await asyncio.gather(task, return_exceptions=True)
        serial_port, self._serial = self._serial, None
        if serial_port is not None:
            # In a thread, after any exchange still running in one.
            await asyncio.get_running_loop().run_in_executor(None, self._close_port, serial_port)
            if loop is not None:
                logger.info("RS485 locker on %s stopped", self.port)

    def healthy(self) -> bool:
        """Started, and every board answers."""
        return self.started and not self._offline and not self._unconfirmed

    def offline_boards(self) -> set[int]:
        return set(self._offline)

    def subscribe_boards(self, listener: BoardListener) -> None:
        """Call ``listener(board, online, compartments)`` when a board drops off or comes back."""
        self._boards.subscribe(listener)

    # -- LockDriver -------------------------------------------------------------------------

    async def unlock(self, compartment_id: str, pulse_s: float) -> None:
        check_unlock_request(
            compartment_id, pulse_s, known=self._channels, started=self.started
        )
        lock = self._pulse_locks[compartment_id]
        async with lock:
            if self._pulse_locks.get(compartment_id) is not lock or not self.started:
                raise HardwareError(
                    "lock driver stopped before the pulse", compartment_id=compartment_id
                )
            board, index = self._channels[compartment_id]
            refusal = self.cannot_pulse(compartment_id)
            if refusal is not None:
                raise HardwareError(refusal, compartment_id=compartment_id)
            token = object()
            self._energised[compartment_id] = token
            try:
                await self._pulse(compartment_id, board, index, pulse_s)
            finally:
                if self._energised.get(compartment_id) is token:
                    del self._energised[compartment_id]

    async def _pulse(self, compartment_id: str, board: int, index: int, pulse_s: float) -> None:
        """Send the one unlock frame, watch the door, and fail only if the board is gone."""
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        self._watch_board(board, compartment_id, pulse_s + self.door_watch_s)
        problem = None
        try:
            reply = await self._exchange(
                board, kerong.unlock_frame(board, index),
                attempts=1, expect_reply=self.answers_unlock, lock_index=None,
            )
        except NoValidReply as exc:
            problem = exc.problem
            logger.warning(
                "board %d did not acknowledge the unlock of %s (%s); not resending it: the "
                "door sensor tells whether it opened", board, compartment_id, problem,
            )
        except HardwareError as exc:
            raise HardwareError(
                f"unlock of {compartment_id} failed: {exc}", compartment_id=compartment_id
            ) from exc
        else:
            if reply is not None:
                self._board_answered(board, reply)
        await asyncio.sleep(pulse_s)
        if problem is None and self.answers_unlock:
            return  # it answered the frame, so it heard it
        if self._answered_at.get(board, -1.0) > sent_at:
            return  # it answered a status poll since: it is there; the door tells the rest
        try:
            status = await self._ask_status(board)
        except HardwareError as exc:
            if self.started:
                self._board_failed(board, exc)
            raise HardwareError(
                f"unlock of {compartment_id}: board {board} is not answering "
                f"({getattr(exc, 'problem', exc)})", compartment_id=compartment_id,
            ) from exc
        self._board_answered(board, status)

    def cannot_pulse(self, compartment_id: str) -> str | None:
        channel = self._channels.get(compartment_id)
        if channel is None:
            return None  # unlock() names an unknown compartment itself
        board = channel[0]
        if board in self._offline:
            return f"board {board} is not answering; not pulsing {compartment_id}"
        if board in self._unconfirmed:
            return f"board {board} did not confirm its unlock time; not pulsing {compartment_id}"
        return None

    def energised(self) -> frozenset[str]:
        return frozenset(self._energised.copy())

    def force_off(self) -> None:
        """Nothing to switch: the board times each pulse itself (its unlock time, ``0x37``), so
        a stalled host cannot hold a lock energised. Only the host's record is cleared."""
        self._energised.clear()

    # -- DoorSensors ------------------------------------------------------------------------

    def read(self) -> dict[str, DoorState]:
        return self._doors.snapshot()

    def subscribe(self, listener: DoorListener) -> None:
        self._doors.subscribe(listener)

    # -- polling ----------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            await self._poll_once()

    async def _poll_once(self) -> None:
        """Ask every board for its status; an offline board only once, and only every
        ``OFFLINE_POLL_EVERY`` polls, so a dead board does not hold the bus from the others."""
        now = self._loop.time() if self._loop is not None else 0.0
        for board in self.boards:
            offline = board in self._offline
            backoff = OFFLINE_POLL_EVERY * self.poll_interval_s
            if offline and now < self._offline_polled_at.get(board, 0.0) + backoff:
                continue
            if offline:
                self._offline_polled_at[board] = now
            try:
                status = await self._ask_status(board, attempts=1 if offline else None)
            except HardwareError as exc:
                if self.started:
                    self._board_failed(board, exc)
                continue
            self._board_answered(board, status)

    def _watch_board(self, board: int, compartment_id: str, for_s: float) -> None:
        """Poll ``board`` every ``fast_poll_interval_s`` for the next ``for_s`` seconds, or
        until every door unlocked on it has read open, or it stops answering."""
        loop = asyncio.get_running_loop()
        self._watch_until[board] = max(self._watch_until.get(board, 0.0), loop.time() + for_s)
        self._awaiting.setdefault(board, set()).add(compartment_id)
        watcher = self._watchers.get(board)
        if watcher is None or watcher.done():
            self._watchers[board] = loop.create_task(
                self._poll_fast(board), name=f"rs485-watch-{board}"
            )

    async def _poll_fast(self, board: int) -> None:
        """One attempt per poll, and as many misses in a row as a request has attempts end
        the watch: whether the board is offline is the regular poll's call, and a silent
        board must not hold the bus from the others."""
        loop = asyncio.get_running_loop()
        misses = 0
        try:
            while (self.started and loop.time() < self._watch_until.get(board, 0.0)
                   and self._awaiting.get(board) and board not in self._offline
                   and misses <= self.retries):
                await asyncio.sleep(self.fast_poll_interval_s)
                try:
                    status = await self._ask_status(board, attempts=1)
                except NoValidReply:
                    misses += 1
                    continue
                except HardwareError:
                    return
                misses = 0
                self._board_answered(board, status)
        finally:
            self._watch_until.pop(board, None)
            self._awaiting.pop(board, None)

    def _board_failed(self, board: int, exc: HardwareError) -> None:
        went_offline = board not in self._offline
        if went_offline:
            self._offline.add(board)
            logger.warning("RS485 board %d went offline: %s", board, exc)
        for cid, (b, _) in self._channels.items():
            if b == board:
                self._doors.update(cid, DoorState.UNKNOWN, notify=self.started)
        if went_offline:
            self._boards.tell(board, online=False)

    def _board_answered(self, board: int, status: kerong.BoardStatus) -> None:
        if not self.started or self._loop is None:
            return
        self._answered_at[board] = self._loop.time()
        came_back = board in self._offline
        if came_back:
            self._offline.discard(board)
            logger.info("RS485 board %d is back online", board)
        awaiting = self._awaiting.get(board, set())
        for cid, (b, index) in self._channels.items():
            if b == board:
                is_open = status.door_open(index, open_when_set=self.lock_bit_open_when_set)
                self._doors.update(cid, DoorState.OPEN if is_open else DoorState.CLOSED)
                if is_open:
                    awaiting.discard(cid)
        if came_back:
            self._boards.tell(board, online=True)

    # -- the bus ----------------------------------------------------------------------------

    async def _ask_status(self, board: int, *, attempts: int | None = None) -> kerong.BoardStatus:
        status = await self._exchange(board, kerong.status_frame(board), attempts=attempts)
        assert status is not None, "a status request expects a reply"
        return status

    async def _exchange(
        self, board: int, frame: bytes, *, attempts: int | None = None,
        expect_reply: bool = True, lock_index: int | None = 0,
    ) -> kerong.BoardStatus | None:
        """Send ``frame`` to ``board`` and return its status reply (None if none is expected).

        ``attempts`` defaults to 1 + retries: only for frames that are safe to repeat.
        A reply whose ADDR low nibble is not ``lock_index`` (None: any) is a late answer to an
        earlier unlock, and is skipped.
        Raises NoValidReply (naming what was wrong) or HardwareError (the port failed).
        """
        loop = self._loop
        if loop is None or not self.started:
            raise HardwareError("RS485 port is not open")
        tries = self.retries + 1 if attempts is None else attempts
        async with self._bus_lock:
            return await loop.run_in_executor(
                None, self._exchange_blocking, board, frame, tries, expect_reply, lock_index
            )

    def _exchange_blocking(
        self, board: int, frame: bytes, attempts: int, expect_reply: bool,
        lock_index: int | None,
    ) -> kerong.BoardStatus | None:
        with self._io_lock:
            serial_port = self._serial
            if serial_port is None:
                raise HardwareError("RS485 port is closed")
            problem = "no reply"
            for attempt in range(attempts):
                wait = self._last_io + self.inter_frame_gap_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    serial_port.reset_input_buffer()
                    serial_port.write(frame)
                    if not expect_reply:
                        return None
                    status, problem = self._read_status(serial_port, board, lock_index)
                except Exception as exc:  # serial.SerialException is an OSError
                    raise HardwareError(f"RS485 port {self.port} failed: {exc}") from exc
                finally:
                    self._last_io = time.monotonic()
                if status is not None:
                    return status
                logger.debug(
                    "board %d, attempt %d of %d: %s", board, attempt + 1, attempts, problem
                )
            if lock_index is None:
                self._swallow_late_answer(serial_port)
            raise NoValidReply(
                f"board {board} did not answer {frame.hex(' ')} after {attempts} "
                f"attempt(s): {problem}",
                problem=problem,
            )

    def _swallow_late_answer(self, serial_port: SerialPort) -> None:
        """After an unlock that got no valid answer, wait one more timeout for a late one and
        throw it away: an answer for lock 1 has the ADDR of a status reply, and read as one it
        would say "closed" after the door was seen open. Called under the I/O lock."""
        try:
            serial_port.read(kerong.STATUS_REPLY_LEN)
            serial_port.reset_input_buffer()
        except Exception as exc:  # the port failing shows on the next request
            logger.debug("draining after an unanswered unlock: %s", exc)
        finally:
            self._last_io = time.monotonic()

    def _read_status(
        self, serial_port: SerialPort, board: int, lock_index: int | None
    ) -> tuple[kerong.BoardStatus | None, str]:
        """Read one status frame; a late answer to an earlier request is skipped once."""
        for _ in range(2):
            reply = serial_port.read(kerong.STATUS_REPLY_LEN)
            if not reply:
                return None, f"no reply within {self.timeout_s * 1000:g} ms"
            try:
                status = kerong.parse_status_reply(reply, board=board)
            except kerong.ProtocolError as exc:
                return None, str(exc)
            if lock_index is None or status.lock_index == lock_index:
                return status, ""
            logger.debug("board %d: skipped a late answer %s", board, reply.hex(" "))
        return None, "only late answers to earlier requests"

    def _open_port(self) -> SerialPort:
        return self._serial_factory(
            port=self.port,
            baudrate=self.baudrate,
            bytesize=8,
            parity="N",
            stopbits=1,
            timeout=self.timeout_s,
            write_timeout=self.timeout_s,
        )

    def _close_port(self, serial_port: SerialPort) -> None:
        with self._io_lock:
            try:
                serial_port.close()
            except Exception:
                logger.exception("closing RS485 port %s failed", self.port)
