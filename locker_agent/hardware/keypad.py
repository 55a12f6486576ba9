"""A matrix keypad (3x4 or 4x4 membrane) scanned over GPIO through gpiozero.

gpiozero has no keypad class (gpiozero issue #358), so this builds one from its plain devices:
rows are outputs, columns are inputs with pull-ups. A scan drives one row low at a time and
reads which columns it pulls low with it; a pressed key joins its row to its column.
Key values are codes in the making: they never reach a log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from gpiozero import DigitalInputDevice, DigitalOutputDevice  # type: ignore[import-untyped]

from locker_agent.app.ports.hardware import CodeEntry, CodeInput, CodeSubmitter, HardwareError

logger = logging.getLogger(__name__)


class _Line(Protocol):
    """The part of gpiozero's digital devices the keypad uses."""

    @property
    def value(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...


class _RowLine(_Line, Protocol):
    def on(self) -> None: ...
    def off(self) -> None: ...


class MatrixKeypad(CodeInput):
    """A row-by-column keypad on GPIO pins (BCM numbers).

    ``keys`` lists the legends row by row: "123456789*0#" for 4 rows of 3 columns,
    "123A456B789C*0#D" for 4x4. A key counts once when it has read pressed on
    ``debounce_scans`` scans in a row (one scan every ``scan_interval_s``), and not again
    until released: holding a key types it once. ``enter_key`` submits what was typed,
    ``clear_key`` empties it; an entry longer than ``max_length`` is thrown away, and so is one
    left untouched for ``entry_timeout_s``. Every other key is part of the code.
    """

    def __init__(
        self,
        rows: Sequence[int],
        cols: Sequence[int],
        keys: Sequence[str],
        *,
        pin_factory: object | None = None,
        scan_interval_s: float = 0.01,
        debounce_scans: int = 3,
        enter_key: str = "#",
        clear_key: str = "*",
        max_length: int = 16,
        entry_timeout_s: float = 20.0,
        key_listener: Callable[[str], None] | None = None,
    ) -> None:
        if not rows or not cols:
            raise ValueError("a keypad needs at least one row and one column")
        if len(keys) != len(rows) * len(cols):
            raise ValueError(
                f"{len(rows)}x{len(cols)} keypad needs {len(rows) * len(cols)} keys, "
                f"got {len(keys)}"
            )
        if len(set(rows) | set(cols)) != len(rows) + len(cols):
            raise ValueError("every row and column needs a pin of its own")
        if enter_key not in keys or clear_key not in keys or enter_key == clear_key:
            raise ValueError("enter_key and clear_key must be two different keys of the pad")
        if not scan_interval_s > 0:
            raise ValueError(f"scan_interval_s must be > 0, got {scan_interval_s!r}")
        if debounce_scans < 1:
            raise ValueError(f"debounce_scans must be >= 1, got {debounce_scans!r}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length!r}")
        if not entry_timeout_s > 0:
            raise ValueError(f"entry_timeout_s must be > 0, got {entry_timeout_s!r}")
        self.rows = tuple(rows)
        self.cols = tuple(cols)
        self.keys = tuple(keys)
        self.pin_factory = pin_factory
        self.scan_interval_s = scan_interval_s
        self.debounce_scans = debounce_scans
        self.enter_key = enter_key
        self.clear_key = clear_key
        self.max_length = max_length
        self.entry_timeout_s = entry_timeout_s
        self.key_listener = key_listener
        """Told every key as it counts (``locker-agent hw-monitor``); never log what it hears."""
        self._row_lines: list[_RowLine] = []
        self._col_lines: list[_Line] = []
        self._scan_task: asyncio.Task[None] | None = None
        self._deliver_task: asyncio.Task[None] | None = None
        self._entries: asyncio.Queue[CodeEntry] | None = None
        self._buffer: list[str] = []
        self._overflowed = False
        self._last_key_at = 0.0
        self._seen: dict[int, int] = {}
        """Key index -> consecutive scans it read pressed."""

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._scan_task is not None and not self._scan_task.done()

    def healthy(self) -> bool:
        """Scanning, and every row and column device still open."""
        lines: list[_Line] = [*self._row_lines, *self._col_lines]
        return self.started and bool(lines) and not any(line.closed for line in lines)

    async def start(self, submit: CodeSubmitter) -> None:
        if self.started:
            raise RuntimeError("keypad already started")
        await self.stop()
        try:
            for pin in self.rows:
                # Active low: "on" pulls the row to ground; idle rows sit high.
                self._row_lines.append(
                    cast(
                        _RowLine,
                        DigitalOutputDevice(
                            pin,
                            active_high=False,
                            initial_value=False,
                            pin_factory=self.pin_factory,
                        ),
                    )
                )
            for pin in self.cols:
                # Pulled up: "active" when a pressed key ties it to a low row.
                self._col_lines.append(
                    cast(
                        _Line,
                        DigitalInputDevice(pin, pull_up=True, pin_factory=self.pin_factory),
                    )
                )
        except Exception as exc:
            self._release()
            raise HardwareError(f"could not take the keypad's GPIO pins: {exc}") from exc
        self._reset_entry()
        self._seen.clear()
        entries: asyncio.Queue[CodeEntry] = asyncio.Queue()
        self._entries = entries
        loop = asyncio.get_running_loop()
        self._deliver_task = loop.create_task(self._deliver(entries, submit), name="keypad-submit")
        self._scan_task = loop.create_task(self._scan_loop(), name="keypad-scan")

    async def stop(self) -> None:
        tasks = [task for task in (self._scan_task, self._deliver_task) if task is not None]
        self._scan_task = self._deliver_task = None
        self._entries = None
        current = asyncio.get_running_loop()
        for task in tasks:
            if not task.get_loop().is_closed():
                task.cancel()
        await asyncio.gather(
            *(task for task in tasks if task.get_loop() is current), return_exceptions=True
        )
        self._release()
        self._reset_entry()

    def _release(self) -> None:
        lines: list[_Line] = [*self._row_lines, *self._col_lines]
        self._row_lines.clear()
        self._col_lines.clear()
        for line in lines:
            try:
                line.close()
            except Exception:
                logger.exception("could not release a keypad GPIO device")

    # -- scanning ---------------------------------------------------------------------------

    def scan(self) -> set[int]:
        """Indexes into ``keys`` of the keys that read pressed right now."""
        pressed: set[int] = set()
        width = len(self._col_lines)
        for r, row in enumerate(self._row_lines):
            row.on()
            try:
                for c, col in enumerate(self._col_lines):
                    if col.value:
                        pressed.add(r * width + c)
            finally:
                row.off()
        return pressed

    async def _scan_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            try:
                pressed = self.scan()
            except Exception:
                if not failing:
                    logger.exception("keypad scan failed")
                failing = True
                pressed = set()
            else:
                failing = False
            for index in list(self._seen):
                if index not in pressed:
                    del self._seen[index]  # released (or a bounce): may count again
            for index in sorted(pressed):
                count = self._seen.get(index, 0) + 1
                self._seen[index] = count
                if count == self.debounce_scans:
                    self._key(self.keys[index], loop.time())
            if (
                self._buffer or self._overflowed
            ) and loop.time() - self._last_key_at >= self.entry_timeout_s:
                logger.info("keypad entry left unfinished; discarded")
                self._reset_entry()
            await asyncio.sleep(self.scan_interval_s)

    def _key(self, key: str, now: float) -> None:
        self._last_key_at = now
        if self.key_listener is not None:
            try:
                self.key_listener(key)
            except Exception:
                logger.exception("keypad key listener failed")
        if key == self.clear_key:
            self._reset_entry()
        elif key == self.enter_key:
            text = "".join(self._buffer)
            overflowed = self._overflowed
            self._reset_entry()
            if text and not overflowed and self._entries is not None:
                self._entries.put_nowait(CodeEntry(source="keypad", text=text))
        elif self._overflowed:
            pass  # swallow the rest of an over-long entry until enter or clear
        elif len(self._buffer) >= self.max_length:
            logger.warning("keypad entry longer than %d keys; discarded", self.max_length)
            self._buffer.clear()
            self._overflowed = True
        else:
            self._buffer.append(key)

    def _reset_entry(self) -> None:
        self._buffer.clear()
        self._overflowed = False

    async def _deliver(self, entries: asyncio.Queue[CodeEntry], submit: CodeSubmitter) -> None:
        while True:
            entry = await entries.get()
            try:
                await submit(entry)
            except Exception as exc:
                # The entry's repr hides the code; the exception type is enough to go on.
                logger.warning("keypad entry %r not handled: %s", entry, type(exc).__name__)
