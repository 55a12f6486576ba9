"""QR and barcode scanners in serial mode (USB CDC or a serial adapter), through pyserial.

A scanner in serial mode "types" each code it reads as one line: the code's characters, then
CR, LF or CRLF. The port is read on a worker thread (pyserial blocks), each byte goes through
a :class:`LineAssembler`, and finished codes hop to the event loop, where they are submitted
one at a time. A port that goes away (the scanner unplugged, the USB hub reset) is reported
once and reopened every ``reconnect_s`` until it is back; it never stops the daemon.

Scanned text is a credential: it never reaches a log, only its length does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from locker_agent.app.ports.hardware import CodeEntry, CodeInput, CodeSubmitter

logger = logging.getLogger(__name__)

SOURCE = "scanner"
DEFAULT_MAX_LENGTH = 512
DEFAULT_LINE_TIMEOUT_S = 0.5
_TERMINATORS = frozenset(b"\r\n")
_PRINTABLE = range(0x20, 0x7F)
_READ_TIMEOUT_S = 0.05
"""How long one blocking read waits; bounds how late stop() and a line timeout are noticed."""


class LineAssembler:
    """Turns the bytes a scanner sends into codes, and refuses what is not a clean code.

    A line ends at CR or LF (so CRLF ends one line; the empty one after it is skipped). A
    line with a byte outside printable ASCII, or longer than ``max_length``, is thrown away
    whole: the rest of it up to its terminator is swallowed. A line left without terminator
    and without a new byte for ``line_timeout_s`` is thrown away too. ``rejected(reason,
    length)`` is called for every line thrown away (the text itself is never passed on).
    """

    def __init__(
        self,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        line_timeout_s: float = DEFAULT_LINE_TIMEOUT_S,
        rejected: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length!r}")
        if not line_timeout_s > 0:
            raise ValueError(f"line_timeout_s must be > 0, got {line_timeout_s!r}")
        self.max_length = max_length
        self.line_timeout_s = line_timeout_s
        self._rejected = rejected or _log_rejected
        self._buffer = bytearray()
        self._spoiled: str | None = None
        """Why the line being received will be thrown away at its terminator."""
        self._spoiled_length = 0
        self._last_byte_at: float | None = None

    def feed(self, data: bytes, now: float) -> list[str]:
        """Take bytes received at ``now`` (monotonic seconds); return the codes they finish."""
        self.expire(now)
        codes: list[str] = []
        for byte in data:
            if byte in _TERMINATORS:
                code = self._end_line()
                if code is not None:
                    codes.append(code)
            elif self._spoiled is not None:
                self._spoiled_length += 1
            elif byte not in _PRINTABLE:
                self._spoil("non-printable input")
            elif len(self._buffer) >= self.max_length:
                self._spoil(f"longer than {self.max_length} characters")
            else:
                self._buffer.append(byte)
        if data:
            self._last_byte_at = now
        return codes

    def expire(self, now: float) -> None:
        """Throw away a partial line that has waited ``line_timeout_s`` for its next byte."""
        if self._last_byte_at is None or now - self._last_byte_at < self.line_timeout_s:
            return
        if self._buffer or self._spoiled is not None:
            reason = self._spoiled or "no line end"
            self._rejected(f"{reason}; timed out", self._pending_length())
        self._reset()

    def _spoil(self, reason: str) -> None:
        self._spoiled = reason
        self._spoiled_length = len(self._buffer) + 1
        self._buffer.clear()

    def _end_line(self) -> str | None:
        code = self._buffer.decode("ascii") if self._spoiled is None else None
        if self._spoiled is not None:
            self._rejected(self._spoiled, self._spoiled_length)
        self._reset()
        return code or None

    def _pending_length(self) -> int:
        return self._spoiled_length if self._spoiled is not None else len(self._buffer)

    def _reset(self) -> None:
        self._buffer.clear()
        self._spoiled = None
        self._spoiled_length = 0
        self._last_byte_at = None


def _log_rejected(reason: str, length: int) -> None:
    logger.warning("scanner input rejected (%s, %d bytes)", reason, length)


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the scanner uses."""

    def read(self, size: int = 1, /) -> bytes: ...

    def close(self) -> None: ...

    @property
    def in_waiting(self) -> int: ...


SerialFactory = Callable[..., SerialPort]


def _default_serial_factory(**kwargs: Any) -> SerialPort:
    import serial  # type: ignore[import-untyped]

    port: SerialPort = serial.Serial(**kwargs)
    return port


class SerialScanner(CodeInput):
    """A line-per-code scanner on a serial port, as a CodeInput (source ``"scanner"``)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        max_length: int = DEFAULT_MAX_LENGTH,
        line_timeout_s: float = DEFAULT_LINE_TIMEOUT_S,
        reconnect_s: float = 1.0,
        serial_factory: SerialFactory | None = None,
    ) -> None:
        if not port:
            raise ValueError("a scanner needs a serial port")
        if not reconnect_s > 0:
            raise ValueError(f"reconnect_s must be > 0, got {reconnect_s!r}")
        self.port = port
        self.baudrate = baudrate
        self.reconnect_s = reconnect_s
        self._assembler = LineAssembler(max_length=max_length, line_timeout_s=line_timeout_s)
        self._serial_factory: SerialFactory = serial_factory or _default_serial_factory
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._deliver_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        """The port is open right now (False while the scanner is unplugged)."""
        return self._connected.is_set()

    def healthy(self) -> bool:
        return self.started and self.connected

    async def start(self, submit: CodeSubmitter) -> None:
        if self.started:
            raise RuntimeError("scanner already started")
        await self.stop()
        loop = asyncio.get_running_loop()
        entries: asyncio.Queue[CodeEntry] = asyncio.Queue()
        self._stopping = threading.Event()
        self._deliver_task = loop.create_task(self._deliver(entries, submit), name="scanner")
        self._thread = threading.Thread(
            target=self._read_forever,
            args=(loop, entries, self._stopping),
            name=f"scanner {self.port}",
            daemon=True,
        )
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        task, self._deliver_task = self._deliver_task, None
        if task is not None and not task.get_loop().is_closed():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(task, return_exceptions=True)
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 2.0)

    # -- the reading thread -----------------------------------------------------------------

    def _read_forever(
        self,
        loop: asyncio.AbstractEventLoop,
        entries: asyncio.Queue[CodeEntry],
        stopping: threading.Event,
    ) -> None:
        reported = False
        while not stopping.is_set():
            try:
                port = self._serial_factory(
                    port=self.port, baudrate=self.baudrate, bytesize=8, parity="N",
                    stopbits=1, timeout=_READ_TIMEOUT_S,
                )
            except Exception as exc:  # serial.SerialException is an OSError
                if not reported:
                    logger.warning("scanner port %s unavailable: %s; retrying", self.port, exc)
                    reported = True
                stopping.wait(self.reconnect_s)
                continue
            logger.info("scanner port %s open", self.port)
            reported = False
            self._connected.set()
            try:
                self._read_port(port, loop, entries, stopping)
            except Exception as exc:
                logger.warning("scanner port %s went away: %s; reconnecting", self.port, exc)
                reported = True
            finally:
                self._connected.clear()
                with contextlib.suppress(Exception):
                    port.close()
            stopping.wait(self.reconnect_s if not stopping.is_set() else 0)

    def _read_port(
        self,
        port: SerialPort,
        loop: asyncio.AbstractEventLoop,
        entries: asyncio.Queue[CodeEntry],
        stopping: threading.Event,
    ) -> None:
        assembler = self._assembler
        while not stopping.is_set():
            data = port.read(max(1, min(port.in_waiting, 4096)))
            codes = assembler.feed(data, time.monotonic()) if data else []
            if not data:
                assembler.expire(time.monotonic())
            for code in codes:
                entry = CodeEntry(source=SOURCE, text=code)
                try:
                    loop.call_soon_threadsafe(entries.put_nowait, entry)
                except RuntimeError:  # the loop is closed: we are being torn down
                    return

    async def _deliver(self, entries: asyncio.Queue[CodeEntry], submit: CodeSubmitter) -> None:
        while True:
            entry = await entries.get()
            try:
                await submit(entry)
            except Exception as exc:
                # the entry's repr hides the code; the exception type is enough to go on
                logger.warning("scanner entry %r not handled: %s", entry, type(exc).__name__)
