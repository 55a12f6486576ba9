"""The matrix keypad, pressed by a finger made of mock pins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin  # type: ignore[import-untyped]

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.hardware.keypad import MatrixKeypad

from .contract import eventually, run

ROWS = (5, 6, 13, 19)
COLS = (12, 16, 20, 21)
KEYS_3X4 = "123456789*0#"
KEYS_4X4 = "123A456B789C*0#D"
DEBOUNCE_SCANS = 3


class KeypadPin(MockPin):  # type: ignore[misc]
    """A mock pin wired into the keypad matrix: driving a row re-wires the columns."""

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed and self._function == "output":
            self._factory.pin_moved(self, value)
        return changed

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self._factory.rewire()


class KeypadFactory(MockFactory):  # type: ignore[misc]
    """Mock pins plus the keypad's membrane: a pressed key joins its row line to its column."""

    def __init__(self) -> None:
        super().__init__(pin_class=KeypadPin)
        self.layout: tuple[tuple[int, ...], tuple[int, ...], str] = (ROWS[:4], COLS[:3], KEYS_3X4)
        self.pressed: set[str] = set()
        self.scans = 0
        """Times the first row was driven low: one per keypad scan."""

    def pin_moved(self, pin: KeypadPin, value: bool) -> None:
        rows, _, _ = self.layout
        if not value and pin is self.pin(rows[0]):
            self.scans += 1
        self.rewire()

    def rewire(self) -> None:
        rows, cols, keys = self.layout
        for c, col in enumerate(cols):
            col_pin = self.pin(col)
            if col_pin.function != "input":
                continue
            low = False
            for r, row in enumerate(rows):
                if keys[r * len(cols) + c] not in self.pressed:
                    continue
                row_pin = self.pin(row)
                if row_pin.function == "output" and not row_pin.state:
                    low = True
            if low:
                col_pin.drive_low()
            elif col_pin.pull == "up":
                col_pin.drive_high()

    def press(self, key: str) -> None:
        self.pressed.add(key)
        self.rewire()

    def release(self, key: str) -> None:
        self.pressed.discard(key)
        self.rewire()

    async def wait_scans(self, count: int) -> None:
        target = self.scans + count
        await eventually(lambda: self.scans >= target, what=f"{count} scan(s)")

    async def type(self, text: str) -> None:
        """Press and release each key like a person: held for a few scans, then let go."""
        for key in text:
            self.press(key)
            await self.wait_scans(DEBOUNCE_SCANS + 2)
            self.release(key)
            await self.wait_scans(2)


@pytest.fixture
def factory() -> Iterator[KeypadFactory]:
    made = KeypadFactory()
    try:
        yield made
    finally:
        made.reset()


class Typed:
    def __init__(self) -> None:
        self.entries: list[CodeEntry] = []

    async def submit(self, entry: CodeEntry) -> None:
        self.entries.append(entry)

    @property
    def codes(self) -> list[str]:
        assert all(entry.source == "keypad" for entry in self.entries)
        return [entry.text for entry in self.entries]


def make_keypad(
    factory: KeypadFactory, *, four_by_four: bool = False, **options: Any
) -> MatrixKeypad:
    rows, cols, keys = (ROWS, COLS, KEYS_4X4) if four_by_four else (ROWS, COLS[:3], KEYS_3X4)
    factory.layout = (rows, cols, keys)
    options = {"scan_interval_s": 0.002, "debounce_scans": DEBOUNCE_SCANS} | options
    return MatrixKeypad(rows, cols, keys, pin_factory=factory, **options)


def with_keypad(keypad: MatrixKeypad, scenario: Any) -> Typed:
    typed = Typed()

    async def main() -> None:
        await keypad.start(typed.submit)
        try:
            await scenario()
            await asyncio.sleep(0.02)  # let the last submission through
        finally:
            await keypad.stop()

    run(main())
    return typed


def test_typed_code_is_submitted_on_enter(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory)

    async def scenario() -> None:
        assert keypad.healthy()
        await factory.type("4829#")

    assert with_keypad(keypad, scenario).codes == ["4829"]
    assert not keypad.healthy()


def test_idle_rows_sit_high_and_are_released_at_stop(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory)

    async def scenario() -> None:
        await factory.wait_scans(2)
        assert all(factory.pin(row).state for row in ROWS)  # between scans: all idle

    with_keypad(keypad, scenario)
    assert all(factory.pin(row).function == "input" for row in ROWS)


def test_holding_a_key_types_it_once(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory)

    async def scenario() -> None:
        factory.press("7")
        await factory.wait_scans(10 * DEBOUNCE_SCANS)
        factory.release("7")
        await factory.wait_scans(2)
        await factory.type("#")

    assert with_keypad(keypad, scenario).codes == ["7"]


def test_a_bounce_shorter_than_the_debounce_types_nothing(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory)

    async def scenario() -> None:
        for scans in (1, DEBOUNCE_SCANS - 1, 1):
            factory.press("5")
            await factory.wait_scans(scans)
            factory.release("5")
            await factory.wait_scans(1)
        await factory.type("1#")

    assert with_keypad(keypad, scenario).codes == ["1"]


def test_clear_empties_the_entry(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory)

    async def scenario() -> None:
        await factory.type("99*123#")

    assert with_keypad(keypad, scenario).codes == ["123"]


def test_enter_on_an_empty_entry_submits_nothing(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory)

    async def scenario() -> None:
        await factory.type("#*#")

    assert with_keypad(keypad, scenario).codes == []


def test_an_idle_partial_entry_is_discarded(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory, entry_timeout_s=0.3)

    async def scenario() -> None:
        await factory.type("12")
        await asyncio.sleep(0.5)
        await factory.type("3#")

    assert with_keypad(keypad, scenario).codes == ["3"]


def test_an_over_long_entry_is_discarded_without_logging_it(
    factory: KeypadFactory, caplog: pytest.LogCaptureFixture
) -> None:
    keypad = make_keypad(factory, max_length=4)

    async def scenario() -> None:
        await factory.type("123456#")
        await factory.type("67#")

    with caplog.at_level(logging.DEBUG, logger="locker_agent.hardware.keypad"):
        typed = with_keypad(keypad, scenario)
    assert typed.codes == ["67"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "4" in warnings[0]
    for record in caplog.records:
        assert "1234" not in record.getMessage()
        assert "67" not in record.getMessage()


def test_four_by_four_layout_types_letters(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory, four_by_four=True)

    async def scenario() -> None:
        await factory.type("A1D0#")

    assert with_keypad(keypad, scenario).codes == ["A1D0"]


def test_a_failing_submission_does_not_stop_the_keypad(
    factory: KeypadFactory, caplog: pytest.LogCaptureFixture
) -> None:
    keypad = make_keypad(factory)
    delivered: list[str] = []

    async def flaky(entry: CodeEntry) -> None:
        delivered.append(entry.text)
        if len(delivered) == 1:
            raise RuntimeError(f"store unavailable for {entry.text}")

    async def main() -> None:
        await keypad.start(flaky)
        try:
            await factory.type("11#22#")
            await eventually(lambda: len(delivered) == 2, what="two submissions")
        finally:
            await keypad.stop()

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert delivered == ["11", "22"]
    assert all("11" not in record.getMessage() for record in caplog.records)


def test_start_twice_is_refused_and_stop_is_idempotent(factory: KeypadFactory) -> None:
    keypad = make_keypad(factory)

    async def main() -> None:
        await keypad.stop()
        typed = Typed()
        await keypad.start(typed.submit)
        with pytest.raises(RuntimeError):
            await keypad.start(typed.submit)
        await keypad.stop()
        await keypad.stop()
        await keypad.start(typed.submit)  # and again after a stop
        await factory.type("5#")
        await eventually(lambda: typed.codes == ["5"], what="code after restart")
        await keypad.stop()

    run(main())


@pytest.mark.parametrize(
    "args",
    [
        ((5, 6), (12,), "123"),
        ((5, 6), (5, 12), "1234"),
        ((5,), (12, 16), "1*"),
    ],
)
def test_bad_layouts_are_refused(factory: KeypadFactory, args: Any) -> None:
    with pytest.raises(ValueError):
        MatrixKeypad(*args, pin_factory=factory)
