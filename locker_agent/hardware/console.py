"""Codes and operator commands typed on a text console: the laptop demo's keypad."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TextIO

from locker_agent.app.ports.hardware import CodeEntry, CodeInput, CodeSubmitter, HardwareError

logger = logging.getLogger(__name__)

MAX_CODE_LENGTH = 64
COMMANDS = frozenset({"open", "close", "force", "status", "help"})
"""First words that make a line an operator command rather than a code."""

CommandHandler = Callable[[list[str]], Awaitable[None]]

_READ_CHUNK = 4096
_SOURCE = "console"


class ConsoleCodeInput(CodeInput):
    """Reads a text stream line by line and submits each line that is a code.

    Lines are stripped; blank lines are ignored; lines longer than ``max_length`` characters,
    with non-printable characters or not valid text in the stream's encoding are rejected with
    a warning that names the length and the reason, never the text. A line whose first word
    is one of COMMANDS goes to ``commands`` (command word lower-cased, the rest as typed).

    Pipes, terminals and sockets are read through the event loop, so stop() is immediate;
    anything else (a regular file, an in-memory stream) is read on a worker thread, which is
    fine because such reads never wait for a person. The stream stays open: it is the caller's.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        commands: CommandHandler | None = None,
        max_length: int = MAX_CODE_LENGTH,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length!r}")
        self._stream = stream
        self._commands = commands
        self._max_length = max_length
        # Longest run of bytes kept while waiting for a line break: any longer line is
        # rejected anyway, and a paste of megabytes must not grow memory.
        self._max_raw_line = max(1024, 4 * max_length + 64)
        self._task: asyncio.Task[None] | None = None

    async def start(self, submit: CodeSubmitter) -> None:
        if self._task is not None and not self._task.done():
            raise RuntimeError("console input is already started")
        stream = self._stream if self._stream is not None else sys.stdin
        if stream is None:
            raise HardwareError("there is no console to read codes from")
        self._task = asyncio.get_running_loop().create_task(
            self._run(stream, submit), name="console-code-input"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        if task is asyncio.current_task():  # stopped by one of its own commands
            return
        await asyncio.gather(task, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Return once the stream has ended or the input was stopped."""
        task = self._task
        if task is not None:
            await asyncio.wait({task})

    async def _run(self, stream: TextIO, submit: CodeSubmitter) -> None:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            async with contextlib.aclosing(self._lines(stream)) as lines:
                async for raw in lines:
                    await self._handle(raw, encoding, submit)
        except (OSError, ValueError):  # descriptor closed under us, stream closed
            logger.exception("console input failed; no more codes from the console")

    async def _handle(self, raw: bytes | str, encoding: str, submit: CodeSubmitter) -> None:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode(encoding)
            except UnicodeDecodeError:
                logger.warning("console input ignored: %d bytes, not valid %s", len(raw), encoding)
                return
        line = raw.strip()
        if not line:
            return
        if len(line) > self._max_length:
            self._reject(len(line), f"longer than {self._max_length}")
            return
        if not line.isprintable():
            self._reject(len(line), "non-printable characters")
            return
        words = line.split()
        command = words[0].lower()
        try:
            if command in COMMANDS:
                if self._commands is None:
                    logger.warning("console command %r is not available", command)
                    return
                await self._commands([command, *words[1:]])
            else:
                await submit(CodeEntry(source=_SOURCE, text=line))
        except Exception:
            # One bad entry must not take the console down; the text stays out of the log.
            logger.exception("console entry of %d characters could not be handled", len(line))

    @staticmethod
    def _reject(length: int, reason: str) -> None:
        logger.warning("console input ignored: %d characters, %s", length, reason)

    def _lines(self, stream: TextIO) -> AsyncGenerator[bytes | str, None]:
        loop = asyncio.get_running_loop()
        try:
            fd = stream.fileno()
            loop.add_reader(fd, _ignore)
        except (OSError, ValueError):
            # No descriptor, or one the selector cannot wait on (a regular file, /dev/null).
            return self._thread_lines(stream)
        loop.remove_reader(fd)
        return self._fd_lines(fd)

    async def _fd_lines(self, fd: int) -> AsyncGenerator[bytes, None]:
        """Lines read straight from the descriptor whenever the event loop says it is readable.

        The descriptor stays in blocking mode (a terminal shares it with stdout); a read after
        readiness returns what is there without waiting.
        """
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        discarding = False  # inside a line already rejected as too long
        while True:
            await _readable(loop, fd)
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except BlockingIOError:  # someone made it non-blocking and another reader won
                continue
            if not chunk:
                if buffer and not discarding:
                    yield bytes(buffer)
                return
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if discarding:
                    discarding = False
                else:
                    yield line
            if len(buffer) > self._max_raw_line:
                if not discarding:
                    self._reject_unbroken()
                discarding = True
                buffer.clear()

    async def _thread_lines(self, stream: TextIO) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        discarding = False
        while True:
            line = await loop.run_in_executor(None, stream.readline, self._max_raw_line)
            if not line:
                return
            complete = line.endswith("\n")
            if discarding:
                discarding = not complete
            elif complete or len(line) < self._max_raw_line:
                yield line
            else:
                self._reject_unbroken()
                discarding = True

    def _reject_unbroken(self) -> None:
        logger.warning(
            "console input ignored: more than %d bytes without a line break", self._max_raw_line
        )


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _ignore() -> None:
    pass
