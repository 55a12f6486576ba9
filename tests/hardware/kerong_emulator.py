"""An emulated RS485 bus of Kerong KR-CU16 boards, on a pseudo-terminal.

The driver opens :attr:`KerongBus.port` (the pty's slave side) like a real serial port; a
thread serves the master side and answers exactly per the byte protocol. Fault switches make
the boards misbehave the way field hardware does, and model switches copy the documented
quirks of compatible boards: some never answer an unlock (``answers_unlock=False``: several
public drivers never read one), some answer it only after the lock has moved
(``unlock_answer_delay_s``), and a customer may shut a sprung door again at once
(``door_open_for_s``).
"""

from __future__ import annotations

import contextlib
import os
import pty
import random
import select
import threading
import time
import tty
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from locker_agent.hardware import kerong


@dataclass
class EmulatedBoard:
    board: int
    doors_open: list[bool] = field(default_factory=lambda: [False] * kerong.LOCKS_PER_BOARD)
    items: list[bool] = field(default_factory=lambda: [False] * kerong.LOCKS_PER_BOARD)
    unlock_time_units: int | None = None
    unlocks: list[int] = field(default_factory=list)
    """Lock indexes unlocked, in order."""
    silent: bool = False
    busy_for: int = 0


@dataclass(frozen=True)
class Received:
    at: float
    """time.monotonic() when the frame was complete."""
    frame: bytes


class KerongBus:
    """Boards at ``boards`` (board numbers 0-15) on one emulated bus."""

    def __init__(
        self,
        boards: Iterable[int] = (0,),
        *,
        lock_bit_open_when_set: bool = False,
        spring_open: bool = True,
        answers_unlock: bool = True,
        unlock_answer_delay_s: float = 0.0,
        status_answer_delay_s: float = 0.0,
        door_open_for_s: float | None = None,
    ) -> None:
        self.boards = {b: EmulatedBoard(b) for b in boards}
        self.lock_bit_open_when_set = lock_bit_open_when_set
        self.spring_open = spring_open
        self.answers_unlock = answers_unlock
        self.unlock_answer_delay_s = unlock_answer_delay_s
        self.status_answer_delay_s = status_answer_delay_s
        """A slow board: every other answer comes this late (within the driver's timeout)."""
        self.door_open_for_s = door_open_for_s
        """A sprung door is pushed shut again this long after it opened (None: it stays)."""
        self._timers: list[threading.Timer] = []
        self.received: list[Received] = []
        self._lock = threading.RLock()
        self._corrupt = 0
        self._garbage = 0
        self._partial = 0
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kerong-bus", daemon=True)
        self._thread.start()

    # -- the world ----------------------------------------------------------------------------

    def set_door(self, board: int, lock_index: int, is_open: bool) -> None:
        with self._lock:
            self.boards[board].doors_open[lock_index] = is_open

    def door_open(self, board: int, lock_index: int) -> bool:
        with self._lock:
            return self.boards[board].doors_open[lock_index]

    def set_item(self, board: int, lock_index: int, present: bool) -> None:
        with self._lock:
            self.boards[board].items[lock_index] = present

    # -- fault switches -----------------------------------------------------------------------

    def corrupt_next(self, n: int = 1) -> None:
        """The next ``n`` replies carry a wrong checksum."""
        with self._lock:
            self._corrupt += n

    def garbage_next(self, n: int = 1) -> None:
        """The next ``n`` replies are random bytes."""
        with self._lock:
            self._garbage += n

    def partial_next(self, n: int = 1) -> None:
        """The next ``n`` replies stop after half a frame."""
        with self._lock:
            self._partial += n

    def silent_board(self, board: int, silent: bool = True) -> None:
        """The board drops off the bus (or comes back)."""
        with self._lock:
            self.boards[board].silent = silent

    def busy_board(self, board: int, n: int) -> None:
        """The board ignores its next ``n`` requests (stuck busy)."""
        with self._lock:
            self.boards[board].busy_for = n

    # -- inspection ---------------------------------------------------------------------------

    def frames(self) -> list[bytes]:
        with self._lock:
            return [r.frame for r in self.received]

    def clear_log(self) -> None:
        with self._lock:
            self.received.clear()

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> KerongBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ------------------------------------------------------------------------------

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 256)
            except OSError:
                return
            buffer += chunk
            buffer = self._consume(buffer)

    def _consume(self, buffer: bytes) -> bytes:
        while True:
            start = buffer.find(bytes([kerong.STX]))
            if start < 0:
                return b""
            buffer = buffer[start:]
            if len(buffer) < 3:
                return buffer
            length = 7 if buffer[2] == kerong.CMD_SET_UNLOCK_TIME else 5
            if len(buffer) < length:
                return buffer
            frame, rest = buffer[:length], buffer[length:]
            try:
                kerong.verify_frame(frame)
            except kerong.ProtocolError:
                buffer = buffer[1:]  # not a frame here: resynchronise on the next STX
                continue
            buffer = rest
            with self._lock:
                self.received.append(Received(time.monotonic(), frame))
                reply = self._handle(frame)
            if not reply:
                continue
            delay = (self.unlock_answer_delay_s if frame[2] == kerong.CMD_UNLOCK
                     else self.status_answer_delay_s)
            if delay > 0:
                self._later(delay, self._write, reply)
            else:
                self._write(reply)

    def _write(self, reply: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, reply)

    def _later(self, delay_s: float, action: Callable[..., None], *args: object) -> None:
        timer = threading.Timer(delay_s, action, args)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _handle(self, frame: bytes) -> bytes | None:
        addr, cmd = frame[1], frame[2]
        board = self.boards.get(addr >> 4)
        if board is None or board.silent:
            return None
        if board.busy_for > 0:
            board.busy_for -= 1
            return None
        index = addr & 0x0F
        if cmd == kerong.CMD_UNLOCK:
            board.unlocks.append(index)
            reply = self._status(board, addr)
            if self.spring_open:
                board.doors_open[index] = True
                if self.door_open_for_s is not None:
                    self._later(self.door_open_for_s, self.set_door, board.board, index, False)
            if not self.answers_unlock:
                return None
        elif cmd == kerong.CMD_STATUS:
            reply = self._status(board, addr)
        elif cmd == kerong.CMD_SET_UNLOCK_TIME:
            board.unlock_time_units = int.from_bytes(frame[3:5], "big")
            reply = self._status(board, addr)
        else:
            return None
        return self._spoil(reply)

    def _status(self, board: EmulatedBoard, addr: int) -> bytes:
        lock_flags = [is_open == self.lock_bit_open_when_set for is_open in board.doors_open]
        return kerong.status_reply_frame(
            addr, kerong.encode_bits(lock_flags), kerong.encode_bits(board.items)
        )

    def _spoil(self, reply: bytes) -> bytes:
        if self._corrupt:
            self._corrupt -= 1
            return reply[:-1] + bytes([(reply[-1] + 1) & 0xFF])
        if self._garbage:
            self._garbage -= 1
            return bytes(random.randrange(256) for _ in range(len(reply)))
        if self._partial:
            self._partial -= 1
            return reply[: len(reply) // 2]
        return reply
