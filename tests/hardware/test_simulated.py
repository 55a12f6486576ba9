"""The simulated locker passes the hardware contracts and models latches, doors and jams."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from locker_agent.app.ports.hardware import (
    MAX_PULSE_S,
    CodeEntry,
    DoorSensors,
    HardwareError,
    LockDriver,
    validate_pulse,
)
from locker_agent.domain.model import DoorState
from locker_agent.hardware.console import ConsoleCodeInput
from locker_agent.hardware.simulated import DoorLatched, SimulatedLocker

from .contract import (
    COMPARTMENTS,
    DoorRecorder,
    DoorSensorsContract,
    LockDriverContract,
    eventually,
    run,
)

PULSE_S = 0.05


class TestSimulatedLockDriver(LockDriverContract):
    def make_lock_driver(self) -> LockDriver:
        return SimulatedLocker(self.compartment_ids)


class TestSimulatedDoorSensors(DoorSensorsContract):
    def make_door_sensors(self) -> DoorSensors:
        self.locker = SimulatedLocker(self.compartment_ids)
        return self.locker

    def open_door_physically(self, compartment_id: str) -> None:
        self.locker.open_door(compartment_id, force=True)

    def close_door_physically(self, compartment_id: str) -> None:
        self.locker.close_door(compartment_id)


async def started(locker: SimulatedLocker) -> DoorRecorder:
    await locker.start()
    recorder = DoorRecorder()
    locker.subscribe(recorder)
    return recorder


def run_locker(locker: SimulatedLocker, scenario: Any) -> None:
    async def main() -> None:
        try:
            await scenario()
        finally:
            await locker.stop()

    run(main())


# -- the seam itself ---------------------------------------------------------------------------


def test_code_entry_repr_never_shows_the_code() -> None:
    entry = CodeEntry(source="keypad", text="482913")
    for shown in (repr(entry), str(entry), f"{entry}", repr([entry])):
        assert "482913" not in shown
        assert "keypad" in shown
        assert "6" in shown
    assert entry.text == "482913"


def test_hardware_error_carries_the_compartment() -> None:
    assert HardwareError("board 2 silent", compartment_id="A07").compartment_id == "A07"
    assert HardwareError("port gone").compartment_id is None
    assert issubclass(DoorLatched, HardwareError)


def test_longest_pulse_is_allowed() -> None:
    assert validate_pulse(MAX_PULSE_S) == MAX_PULSE_S == 2.0
    assert validate_pulse(0.001) == 0.001


# -- the simulated locker ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, options",
    [
        ([], {}),
        (["A01", "A01"], {}),
        (COMPARTMENTS, {"auto_close_after_s": 0.0}),
        (COMPARTMENTS, {"latch_window_s": -1.0}),
    ],
)
def test_bad_configuration_is_rejected(ids: list[str], options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatedLocker(ids, **options)


def test_latched_door_does_not_open() -> None:
    locker = SimulatedLocker(COMPARTMENTS)

    async def scenario() -> None:
        recorder = await started(locker)
        assert locker.latched("A01")
        with pytest.raises(DoorLatched) as raised:
            locker.open_door("A01")
        assert raised.value.compartment_id == "A01"
        assert locker.read()["A01"] is DoorState.CLOSED
        assert recorder.changes == []

    run_locker(locker, scenario)


def test_door_can_be_pulled_open_during_the_pulse() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_open_on_unlock=False, latch_window_s=0.0)

    async def scenario() -> None:
        recorder = await started(locker)
        pulse = asyncio.create_task(locker.unlock("A01", 0.2))
        await eventually(lambda: "A01" in locker.energised(), what="A01 energised")
        assert locker.read()["A01"] is DoorState.CLOSED  # not spring-loaded
        assert not locker.latched("A01")
        locker.open_door("A01")
        await pulse
        assert recorder.changes == [("A01", DoorState.OPEN)]

    run_locker(locker, scenario)


def test_latch_stays_released_for_a_window_after_the_pulse() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_open_on_unlock=False, latch_window_s=0.5)

    async def scenario() -> None:
        recorder = await started(locker)
        await locker.unlock("A02", PULSE_S)
        assert locker.energised() == frozenset()
        assert not locker.latched("A02")
        locker.open_door("A02")
        locker.close_door("A02")
        assert locker.latched("A02"), "a closed door catches its latch again"
        with pytest.raises(DoorLatched):
            locker.open_door("A02")
        assert recorder.changes == [("A02", DoorState.OPEN), ("A02", DoorState.CLOSED)]

    run_locker(locker, scenario)


def test_latch_window_runs_out() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_open_on_unlock=False, latch_window_s=0.05)

    async def scenario() -> None:
        await started(locker)
        await locker.unlock("A03", PULSE_S)
        await asyncio.sleep(0.1)
        assert locker.latched("A03")
        with pytest.raises(DoorLatched):
            locker.open_door("A03")

    run_locker(locker, scenario)


def test_forcing_a_latched_door_opens_it_and_nobody_closes_it() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_close_after_s=0.05)

    async def scenario() -> None:
        recorder = await started(locker)
        locker.open_door("A01", force=True)
        await asyncio.sleep(0.15)
        assert locker.read()["A01"] is DoorState.OPEN
        assert recorder.changes == [("A01", DoorState.OPEN)]
        assert locker.pulses == []

    run_locker(locker, scenario)


def test_pulse_springs_the_door_open_and_the_customer_closes_it() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_close_after_s=0.1)

    async def scenario() -> None:
        recorder = await started(locker)
        await locker.unlock("A02", PULSE_S)
        assert locker.read()["A02"] is DoorState.OPEN
        await eventually(lambda: locker.read()["A02"] is DoorState.CLOSED, what="A02 closed")
        assert recorder.changes == [("A02", DoorState.OPEN), ("A02", DoorState.CLOSED)]
        assert locker.read() == dict.fromkeys(COMPARTMENTS, DoorState.CLOSED)

    run_locker(locker, scenario)


def test_door_stays_open_without_auto_close() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_close_after_s=None)

    async def scenario() -> None:
        await started(locker)
        await locker.unlock("A02", PULSE_S)
        await asyncio.sleep(0.1)
        assert locker.read()["A02"] is DoorState.OPEN

    run_locker(locker, scenario)


def test_closing_early_cancels_the_pending_auto_close() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_close_after_s=0.1)

    async def scenario() -> None:
        recorder = await started(locker)
        await locker.unlock("A01", PULSE_S)
        locker.close_door("A01")
        locker.open_door("A01", force=True)
        await asyncio.sleep(0.2)
        assert locker.read()["A01"] is DoorState.OPEN
        assert recorder.changes == [
            ("A01", DoorState.OPEN),
            ("A01", DoorState.CLOSED),
            ("A01", DoorState.OPEN),
        ]

    run_locker(locker, scenario)


def test_stop_cancels_auto_close() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_close_after_s=0.05)

    async def scenario() -> None:
        await started(locker)
        await locker.unlock("A03", PULSE_S)
        await locker.stop()
        await asyncio.sleep(0.1)
        assert locker.read()["A03"] is DoorState.OPEN

    run_locker(locker, scenario)


def test_jammed_latch_clicks_but_never_releases() -> None:
    locker = SimulatedLocker(COMPARTMENTS)

    async def scenario() -> None:
        recorder = await started(locker)
        locker.jam("A01")
        pulse = asyncio.create_task(locker.unlock("A01", 0.1))
        await eventually(lambda: "A01" in locker.energised(), what="A01 energised")
        assert locker.latched("A01")
        await pulse
        assert locker.pulses == [("A01", 0.1)]
        assert locker.read()["A01"] is DoorState.CLOSED
        with pytest.raises(DoorLatched):
            locker.open_door("A01")
        assert recorder.changes == []

        locker.jam("A01", False)
        await locker.unlock("A01", PULSE_S)
        assert recorder.changes == [("A01", DoorState.OPEN)]

    run_locker(locker, scenario)


def test_every_pulse_is_recorded_and_refused_ones_are_not() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_open_on_unlock=False)

    async def scenario() -> None:
        await started(locker)
        await locker.unlock("A01", PULSE_S)
        with pytest.raises(ValueError):
            await locker.unlock("A02", 3.0)
        with pytest.raises(HardwareError):
            await locker.unlock("Z99", PULSE_S)
        await locker.unlock("A03", 0.06)
        await locker.unlock("A01", PULSE_S)
        assert locker.pulses == [("A01", PULSE_S), ("A03", 0.06), ("A01", PULSE_S)]

    run_locker(locker, scenario)


@pytest.mark.parametrize(
    "poke",
    [
        lambda locker: locker.open_door("Z99"),
        lambda locker: locker.open_door("Z99", force=True),
        lambda locker: locker.close_door("Z99"),
        lambda locker: locker.jam("Z99"),
        lambda locker: locker.latched("Z99"),
    ],
)
def test_world_knows_only_its_compartments(poke: Any) -> None:
    with pytest.raises(HardwareError, match="Z99"):
        poke(SimulatedLocker(COMPARTMENTS))


def test_doors_move_silently_while_not_started() -> None:
    locker = SimulatedLocker(COMPARTMENTS)
    recorder = DoorRecorder()
    locker.subscribe(recorder)
    locker.open_door("A01", force=True)
    assert locker.read()["A01"] is DoorState.OPEN
    assert recorder.changes == []


def test_unknown_initial_doors() -> None:
    locker = SimulatedLocker(COMPARTMENTS, initial_door=DoorState.UNKNOWN, auto_close_after_s=None)
    assert locker.read() == dict.fromkeys(COMPARTMENTS, DoorState.UNKNOWN)

    async def scenario() -> None:
        recorder = await started(locker)
        await locker.unlock("A02", PULSE_S)
        assert recorder.changes == [("A02", DoorState.OPEN)]
        assert locker.read()["A01"] is DoorState.UNKNOWN

    run_locker(locker, scenario)


def test_start_and_stop_in_any_order_across_event_loops() -> None:
    locker = SimulatedLocker(COMPARTMENTS, auto_close_after_s=0.05)

    async def first_run() -> None:
        await locker.stop()
        await locker.start()
        await locker.start()
        await locker.unlock("A01", PULSE_S)  # schedules an auto close, then the loop ends

    async def second_run() -> None:
        with pytest.raises(HardwareError, match="not started"):
            await locker.unlock("A02", PULSE_S)  # that loop is gone: must start again
        await locker.start()
        recorder = DoorRecorder()
        locker.subscribe(recorder)
        await locker.unlock("A02", PULSE_S)
        await eventually(lambda: len(recorder.changes) == 2, what="A02 open and closed")
        await locker.stop()
        await locker.stop()
        await locker.start()
        await locker.unlock("A03", PULSE_S)
        await locker.stop()

    run(first_run())
    run(second_run())
    assert [cid for cid, _ in locker.pulses] == ["A01", "A02", "A03"]
    assert locker.energised() == frozenset()


# -- the console -------------------------------------------------------------------------------


class Typed:
    """Collects what a console delivered."""

    def __init__(self) -> None:
        self.entries: list[CodeEntry] = []
        self.commands: list[list[str]] = []

    async def submit(self, entry: CodeEntry) -> None:
        self.entries.append(entry)

    async def command(self, words: list[str]) -> None:
        self.commands.append(words)

    @property
    def codes(self) -> list[str]:
        assert all(entry.source == "console" for entry in self.entries)
        return [entry.text for entry in self.entries]


class Pipe:
    """A text stream over an OS pipe, like a terminal's stdin, and its writing end."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        self.stream: TextIO = os.fdopen(read_fd, "r", encoding="utf-8")
        self._open = True

    def write(self, data: bytes) -> None:
        os.write(self._write_fd, data)

    def close_writer(self) -> None:
        if self._open:
            os.close(self._write_fd)
            self._open = False


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    try:
        yield pipe
    finally:
        pipe.close_writer()
        pipe.stream.close()


def feed(console: ConsoleCodeInput, typed: Typed, pipe: Pipe, data: bytes) -> None:
    """Start the console, type ``data``, end the stream and wait for the console to finish."""

    async def scenario() -> None:
        await console.start(typed.submit)
        pipe.write(data)
        pipe.close_writer()
        await console.wait_closed()
        await console.stop()

    run(scenario())


def test_console_submits_stripped_codes_and_skips_blank_lines(pipe: Pipe) -> None:
    typed = Typed()
    feed(ConsoleCodeInput(pipe.stream), typed, pipe, b"  482913 \n\n   \nABC-42\r\nlast")
    assert typed.codes == ["482913", "ABC-42", "last"]


def test_console_rejects_bad_lines_without_logging_them(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    typed = Typed()
    too_long = "x" * 65
    longest = "8" * 64
    data = f"{too_long}\nkiwi\x1b[Amango\n{longest}\n".encode() + b"pear\xffplum\n777\n"
    with caplog.at_level(logging.WARNING, logger="locker_agent.hardware.console"):
        feed(ConsoleCodeInput(pipe.stream), typed, pipe, data)
    assert typed.codes == [longest, "777"]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert "65 characters" in messages[0]
    assert "non-printable" in messages[1]
    assert "not valid" in messages[2]
    for message in messages:
        for secret in ("xx", "kiwi", "mango", "pear", "plum"):
            assert secret not in message


def test_console_bounds_input_without_line_breaks(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    typed = Typed()
    with caplog.at_level(logging.WARNING, logger="locker_agent.hardware.console"):
        feed(ConsoleCodeInput(pipe.stream), typed, pipe, b"1" * 50_000 + b"\n42\n")
    assert typed.codes == ["42"]
    assert ["line break" in record.getMessage() for record in caplog.records] == [True]


def test_console_passes_commands_to_the_command_handler(pipe: Pipe) -> None:
    typed = Typed()
    console = ConsoleCodeInput(pipe.stream, commands=typed.command)
    feed(console, typed, pipe, b"open A01\nSTATUS\nforce a02\nclose A01\nhelp\n123\nopener\n")
    assert typed.commands == [
        ["open", "A01"],
        ["status"],
        ["force", "a02"],
        ["close", "A01"],
        ["help"],
    ]
    assert typed.codes == ["123", "opener"]


def test_console_drops_commands_without_a_handler(pipe: Pipe) -> None:
    typed = Typed()
    feed(ConsoleCodeInput(pipe.stream), typed, pipe, b"help\nopen A01\n42\n")
    assert typed.codes == ["42"]


def test_console_keeps_going_when_a_submission_fails(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    typed = Typed()

    async def flaky(entry: CodeEntry) -> None:
        if not typed.entries and entry.text == "111111":
            typed.entries.append(entry)
            raise RuntimeError("store unavailable")
        typed.entries.append(entry)

    async def scenario() -> None:
        console = ConsoleCodeInput(pipe.stream)
        await console.start(flaky)
        pipe.write(b"111111\n222222\n")
        pipe.close_writer()
        await console.wait_closed()

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert typed.codes == ["111111", "222222"]
    assert all("111111" not in record.getMessage() for record in caplog.records)


def test_console_stops_at_once_while_waiting_for_a_person(pipe: Pipe) -> None:
    typed = Typed()
    threads_before = threading.active_count()

    async def scenario() -> None:
        console = ConsoleCodeInput(pipe.stream)
        await console.start(typed.submit)
        pipe.write(b"1\n")
        await eventually(lambda: typed.codes == ["1"], what="first code")
        began = time.monotonic()
        await console.stop()
        assert time.monotonic() - began < 0.2
        await console.wait_closed()
        await console.stop()
        pipe.write(b"2\n")
        await asyncio.sleep(0.05)
        assert typed.codes == ["1"]

        await console.start(typed.submit)  # the same stream, again
        with pytest.raises(RuntimeError):
            await console.start(typed.submit)
        await eventually(lambda: typed.codes == ["1", "2"], what="code typed while stopped")
        await console.stop()

    run(scenario())
    assert threading.active_count() == threads_before, "no thread left blocked on the pipe"


def test_console_can_be_stopped_by_one_of_its_commands(pipe: Pipe) -> None:
    async def scenario() -> None:
        async def quit_on_help(words: list[str]) -> None:
            await console.stop()

        console = ConsoleCodeInput(pipe.stream, commands=quit_on_help)
        typed = Typed()
        await console.start(typed.submit)
        pipe.write(b"help\n")
        await console.wait_closed()
        pipe.write(b"1\n")
        await asyncio.sleep(0.05)
        assert typed.codes == []

    run(scenario())


def test_console_reads_streams_without_a_selectable_descriptor(tmp_path: Path) -> None:
    typed = Typed()
    path = tmp_path / "typed.txt"
    path.write_text("1\n\nopen A01\n" + "7" * 5000 + "\n2")

    async def scenario(stream: TextIO) -> None:
        console = ConsoleCodeInput(stream, commands=typed.command)
        await console.start(typed.submit)
        await console.wait_closed()
        await console.stop()

    run(scenario(io.StringIO("1\n\nopen A01\n" + "7" * 5000 + "\n2")))
    with path.open(encoding="utf-8") as regular_file:
        run(scenario(regular_file))
    assert typed.codes == ["1", "2", "1", "2"]
    assert typed.commands == [["open", "A01"], ["open", "A01"]]
