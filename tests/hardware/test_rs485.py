"""The RS485 (Kerong KR-CU16) driver against an emulated bus on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from locker_agent.app.ports.hardware import DoorSensors, HardwareError, LockDriver
from locker_agent.domain.model import DoorState
from locker_agent.hardware import kerong
from locker_agent.hardware.rs485 import NoValidReply, Rs485Locker

from .contract import (
    COMPARTMENTS,
    DoorRecorder,
    DoorSensorsContract,
    LockDriverContract,
    eventually,
    run,
)
from .kerong_emulator import KerongBus

# A01 and A02 on board 0, A03 on board 1's last channel.
CHANNELS: dict[str, tuple[int, int]] = {"A01": (0, 1), "A02": (0, 2), "A03": (1, 16)}
INDEX = {cid: (board, channel - 1) for cid, (board, channel) in CHANNELS.items()}
PULSE_S = 0.05
FAST: dict[str, Any] = {"timeout_ms": 40, "retries": 2, "poll_interval_s": 0.02}


def make_locker(bus: KerongBus, **options: Any) -> Rs485Locker:
    return Rs485Locker(CHANNELS, port=bus.port, **(FAST | options))


@pytest.fixture
def bus() -> Iterator[KerongBus]:
    with KerongBus(boards=(0, 1)) as emulated:
        yield emulated


def run_locker(locker: Rs485Locker, scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await scenario()
        finally:
            await locker.stop()

    run(main())


# -- the contracts -----------------------------------------------------------------------------


class TestRs485LockDriver(LockDriverContract):
    compartment_ids = COMPARTMENTS

    @pytest.fixture(autouse=True)
    def _bus(self) -> Iterator[None]:
        with KerongBus(boards=(0, 1)) as self.bus:
            yield

    def make_lock_driver(self) -> LockDriver:
        return make_locker(self.bus)


class TestRs485DoorSensors(DoorSensorsContract):
    compartment_ids = COMPARTMENTS

    @pytest.fixture(autouse=True)
    def _bus(self) -> Iterator[None]:
        with KerongBus(boards=(0, 1)) as self.bus:
            yield

    def make_door_sensors(self) -> DoorSensors:
        return make_locker(self.bus)

    def open_door_physically(self, compartment_id: str) -> None:
        self.bus.set_door(*INDEX[compartment_id], True)

    def close_door_physically(self, compartment_id: str) -> None:
        self.bus.set_door(*INDEX[compartment_id], False)


class TestRs485DoorSensorsInvertedPolarity(TestRs485DoorSensors):
    """A board that reads the other way (NCU16L): a set bit means open."""

    @pytest.fixture(autouse=True)
    def _bus(self) -> Iterator[None]:
        with KerongBus(boards=(0, 1), lock_bit_open_when_set=True) as self.bus:
            yield

    def make_door_sensors(self) -> DoorSensors:
        return make_locker(self.bus, lock_bit_open_when_set=True)


# -- bytes on the wire -------------------------------------------------------------------------


def test_unlock_sends_the_exact_frame_and_the_door_springs_open(bus: KerongBus) -> None:
    locker = Rs485Locker({"A01": (0, 1), "B16": (1, 16)}, port=bus.port, **FAST)
    recorder = DoorRecorder()

    async def scenario() -> None:
        await locker.start()
        locker.subscribe(recorder)
        bus.clear_log()
        await locker.unlock("A01", PULSE_S)
        assert bytes.fromhex("02 00 31 03 36") in bus.frames()
        await locker.unlock("B16", PULSE_S)
        assert bytes.fromhex("02 1f 31 03 55") in bus.frames()
        await eventually(lambda: len(recorder.changes) == 2, what="both doors open")
        assert sorted(recorder.changes) == [("A01", DoorState.OPEN), ("B16", DoorState.OPEN)]

    run_locker(locker, scenario)
    assert bus.boards[0].unlocks == [0]
    assert bus.boards[1].unlocks == [15]


def test_start_sets_the_unlock_time_of_every_board_capped(bus: KerongBus) -> None:
    locker = make_locker(bus, unlock_pulse_s=5.0, set_unlock_time=True)

    async def scenario() -> None:
        await locker.start()
        await locker.start()  # idempotent

    run_locker(locker, scenario)
    frames = bus.frames()
    assert frames[0] == bytes.fromhex("02 00 37 00 c8 03 04")  # 200 x 10 ms = 2 s, the cap
    assert frames[1] == bytes.fromhex("02 10 37 00 c8 03 14")
    assert bus.boards[0].unlock_time_units == bus.boards[1].unlock_time_units == 200


def test_requests_keep_the_inter_frame_gap(bus: KerongBus) -> None:
    locker = make_locker(bus, inter_frame_gap_ms=0)  # raised to the 5 ms minimum

    async def scenario() -> None:
        await locker.start()
        await asyncio.sleep(0.2)

    run_locker(locker, scenario)
    times = [r.at for r in bus.received]
    assert len(times) > 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.005


def test_pulse_over_two_seconds_is_rejected_without_touching_the_bus(bus: KerongBus) -> None:
    locker = make_locker(bus)

    async def scenario() -> None:
        await locker.start()
        bus.clear_log()
        with pytest.raises(ValueError):
            await locker.unlock("A01", 2.01)
        await asyncio.sleep(0.05)
        assert not any(frame[2] == 0x31 for frame in bus.frames())

    run_locker(locker, scenario)


# -- faults ------------------------------------------------------------------------------------


UNLOCK_A02 = bytes.fromhex("02 01 31 03 37")


def unlock_frames(bus: KerongBus) -> list[bytes]:
    return [f for f in bus.frames() if len(f) > 2 and f[2] == kerong.CMD_UNLOCK]


@pytest.mark.parametrize("fault", ["corrupt_next", "garbage_next", "partial_next"])
def test_a_bad_answer_to_an_unlock_is_never_resent(bus: KerongBus, fault: str) -> None:
    # issue 16: the unlock used to be resent after a bad answer, and the board pulsed 3 times
    locker = make_locker(bus, poll_interval_s=5.0)  # keep the poller off the bus

    async def scenario() -> None:
        await locker.start()
        bus.clear_log()
        getattr(bus, fault)(1)
        await locker.unlock("A02", PULSE_S)  # the board is there: the door tells the rest
        assert unlock_frames(bus) == [UNLOCK_A02]
        assert bus.boards[0].unlocks == [1]
        await eventually(lambda: locker.read()["A02"] is DoorState.OPEN, what="A02 seen open")
        assert locker.healthy()

    run_locker(locker, scenario)


@pytest.mark.parametrize(
    ("fault", "named"),
    [("corrupt_next", "bad checksum"), ("silent_board", "no reply within 40 ms"),
     ("partial_next", "must be 9 bytes")],
)
def test_an_unlock_fails_naming_the_error_when_the_board_stops_answering(
    bus: KerongBus, fault: str, named: str
) -> None:
    locker = make_locker(bus, poll_interval_s=5.0, retries=1)

    async def scenario() -> None:
        await locker.start()
        bus.clear_log()
        if fault == "silent_board":
            bus.silent_board(0)
        else:
            getattr(bus, fault)(100)
        with pytest.raises(HardwareError, match=f"board 0 is not answering.*{named}") as raised:
            await locker.unlock("A01", PULSE_S)
        assert raised.value.compartment_id == "A01"
        assert len(unlock_frames(bus)) == 1
        assert locker.energised() == frozenset()
        assert locker.offline_boards() == {0}

    run_locker(locker, scenario)


def test_a_board_that_never_answers_an_unlock_pulses_once_and_the_door_says_it_worked() -> None:
    # issue 16: several KR-CU16 compatibles execute 0x31 silently; the driver sent it 3 times
    # and recorded a failure while the door had opened
    with KerongBus(boards=(0, 1), answers_unlock=False) as bus:
        for answers_unlock in (True, False):  # told or not, one frame and no failure
            locker = make_locker(bus, poll_interval_s=5.0, answers_unlock=answers_unlock)

            async def scenario(locker: Rs485Locker = locker) -> None:
                await locker.start()
                bus.set_door(0, 1, False)
                bus.clear_log()
                await locker.unlock("A02", PULSE_S)
                assert unlock_frames(bus) == [UNLOCK_A02]
                await eventually(lambda: locker.read()["A02"] is DoorState.OPEN, what="open")
                assert locker.healthy()

            run_locker(locker, scenario)
        assert bus.boards[0].unlocks == [1, 1]


def test_a_late_answer_to_an_unlock_is_not_resent_nor_read_as_a_status() -> None:
    with KerongBus(boards=(0, 1), unlock_answer_delay_s=0.06) as bus:
        locker = make_locker(bus, poll_interval_s=0.05)
        recorder = DoorRecorder()

        async def scenario() -> None:
            await locker.start()
            locker.subscribe(recorder)
            bus.clear_log()
            await locker.unlock("A02", PULSE_S)
            await eventually(lambda: locker.read()["A02"] is DoorState.OPEN, what="A02 open")
            await asyncio.sleep(0.3)  # the late answer (door still closed) has come and gone
            assert unlock_frames(bus) == [UNLOCK_A02]
            assert recorder.changes == [("A02", DoorState.OPEN)]
            assert locker.healthy()

        run_locker(locker, scenario)
        assert bus.boards[0].unlocks == [1]


def test_a_late_answer_for_lock_1_is_not_read_as_a_status() -> None:
    # review: lock 1's unlock answer has the ADDR of a status reply. On a slow board it came
    # in while the next status request waited for its reply, and was read as that reply:
    # "closed", from before the door sprang open
    with KerongBus(boards=(0, 1), unlock_answer_delay_s=0.085,
                   status_answer_delay_s=0.05) as bus:
        locker = make_locker(bus, poll_interval_s=5.0, timeout_ms=60, retries=0)

        async def scenario() -> None:
            await locker.start()
            with pytest.raises(NoValidReply):  # the answer comes 25 ms after the timeout
                await locker._exchange(0, kerong.unlock_frame(0, 0), attempts=1,
                                       lock_index=None)
            assert bus.door_open(0, 0)
            status = await locker._ask_status(0)
            assert status.door_open(0, open_when_set=False), "read the late answer"

        run_locker(locker, scenario)


def test_the_fast_poll_stops_once_the_door_reads_open_or_the_board_is_gone(
    bus: KerongBus,
) -> None:
    locker = make_locker(bus, poll_interval_s=5.0, door_watch_s=30)

    async def scenario() -> None:
        await locker.start()
        await locker.unlock("A01", PULSE_S)
        await eventually(lambda: locker.read()["A01"] is DoorState.OPEN, what="A01 open")
        await asyncio.sleep(0.1)
        bus.clear_log()
        await asyncio.sleep(0.3)
        assert bus.frames() == []  # the door opened: back to the 5 s poll
        bus.set_door(0, 0, False)
        bus.spring_open = False  # a jammed door: the watch would go on for 30 s
        await locker._ask_status(0)
        await locker.unlock("A02", PULSE_S)
        bus.silent_board(0)
        await asyncio.sleep(0.6)  # three misses in a row end the watch
        bus.clear_log()
        await asyncio.sleep(0.3)
        assert bus.frames() == []  # no fast poll into a silent board

    run_locker(locker, scenario)


def test_a_door_open_for_200_ms_is_seen() -> None:
    # issue 16: the 0.5 s poll missed it, and the service pulsed the lock again 10 s later
    with KerongBus(boards=(0, 1), door_open_for_s=0.2) as bus:
        locker = make_locker(bus, poll_interval_s=0.5)
        recorder = DoorRecorder()

        async def scenario() -> None:
            await locker.start()
            locker.subscribe(recorder)
            await locker.unlock("A01", PULSE_S)
            await eventually(lambda: len(recorder.changes) == 2, timeout_s=2, what="open, shut")
            assert recorder.changes == [("A01", DoorState.OPEN), ("A01", DoorState.CLOSED)]

        run_locker(locker, scenario)


def test_the_fast_poll_ends_after_the_door_watch(bus: KerongBus) -> None:
    locker = make_locker(bus, poll_interval_s=5.0, door_watch_s=0.2)

    async def scenario() -> None:
        await locker.start()
        await locker.unlock("A01", PULSE_S)
        await asyncio.sleep(0.4)
        bus.clear_log()
        await asyncio.sleep(0.3)
        assert bus.frames() == []  # back to the 5 s poll

    run_locker(locker, scenario)


def test_silent_board_goes_offline_and_comes_back(
    bus: KerongBus, caplog: pytest.LogCaptureFixture
) -> None:
    locker = make_locker(bus)
    recorder = DoorRecorder()
    boards: list[tuple[int, bool, tuple[str, ...]]] = []
    locker.subscribe_boards(lambda *change: boards.append(change))

    async def scenario() -> None:
        await locker.start()
        await eventually(lambda: locker.read()["A03"] is DoorState.CLOSED, what="A03 known")
        assert locker.healthy()
        locker.subscribe(recorder)

        bus.silent_board(1, True)
        with pytest.raises(HardwareError, match="board 1"):
            await locker.unlock("A03", PULSE_S)
        await eventually(lambda: locker.offline_boards() == {1}, what="board 1 offline")
        assert not locker.healthy()
        assert locker.read()["A03"] is DoorState.UNKNOWN
        assert locker.read()["A01"] is DoorState.CLOSED
        await asyncio.sleep(0.3)  # several failed polls: one warning only

        bus.silent_board(1, False)
        await eventually(locker.healthy, what="board 1 back")
        assert locker.offline_boards() == set()
        await eventually(lambda: locker.read()["A03"] is DoorState.CLOSED, what="A03 refreshed")
        assert recorder.changes == [("A03", DoorState.UNKNOWN), ("A03", DoorState.CLOSED)]
        await locker.unlock("A03", PULSE_S)
        assert [(board, online) for board, online, _ in boards] == [(1, False), (1, True)]
        assert boards[0][2] == boards[1][2]  # the compartments wired to board 1
        assert "A03" in boards[0][2] and "A01" not in boards[0][2]

    with caplog.at_level(logging.INFO, logger="locker_agent.hardware.rs485"):
        run_locker(locker, scenario)
    offline = [r for r in caplog.records if "offline" in r.getMessage()]
    assert len(offline) == 1 and offline[0].levelno == logging.WARNING
    assert any("back online" in r.getMessage() for r in caplog.records)


def test_a_busy_board_that_ignores_an_unlock_is_not_pulsed_again(bus: KerongBus) -> None:
    locker = make_locker(bus, poll_interval_s=5.0)

    async def scenario() -> None:
        await locker.start()
        bus.busy_board(0, 2)  # the unlock and one status poll go unanswered
        await locker.unlock("A01", PULSE_S)  # the board is there: the door sensor tells
        assert bus.boards[0].unlocks == []
        assert len(unlock_frames(bus)) == 1
        assert locker.read()["A01"] is DoorState.CLOSED  # the service's jam retry decides

        bus.busy_board(0, 5)  # longer than the status check's attempts
        with pytest.raises(HardwareError, match="board 0 is not answering"):
            await locker.unlock("A01", PULSE_S)
        assert bus.boards[0].unlocks == []

    run_locker(locker, scenario)


def test_a_silent_board_leaves_the_bus_to_the_boards_beside_it(bus: KerongBus) -> None:
    locker = make_locker(bus, poll_interval_s=0.1)

    async def scenario() -> None:
        await locker.start()
        bus.silent_board(1)
        await eventually(lambda: locker.offline_boards() == {1}, what="board 1 offline")
        bus.clear_log()
        await asyncio.sleep(1.0)
        asked = [f for f in bus.frames() if f[1] >> 4 == 1]
        assert 1 <= len(asked) <= 4  # once every 4th poll, one attempt each (was 3 per poll)
        await locker.unlock("A01", PULSE_S)  # board 0 goes on working
        await eventually(lambda: locker.read()["A01"] is DoorState.OPEN, what="A01 open")
        assert locker.read()["A03"] is DoorState.UNKNOWN
        bus.silent_board(1, False)
        await eventually(locker.healthy, what="board 1 back")

    run_locker(locker, scenario)


def test_stuck_busy_board_polled_offline_then_online(bus: KerongBus) -> None:
    locker = make_locker(bus)

    async def scenario() -> None:
        await locker.start()
        bus.busy_board(1, 4)
        await eventually(lambda: locker.offline_boards() == {1}, what="board 1 offline")
        await eventually(locker.healthy, what="board 1 back")
        assert locker.read()["A03"] is DoorState.CLOSED

    run_locker(locker, scenario)


def test_several_boards_share_the_bus(bus: KerongBus) -> None:
    locker = make_locker(bus)

    async def scenario() -> None:
        await locker.start()
        bus.set_door(1, 15, True)
        await eventually(lambda: locker.read()["A03"] is DoorState.OPEN, what="A03 open")
        assert locker.read()["A01"] is DoorState.CLOSED
        await asyncio.gather(locker.unlock("A01", PULSE_S), locker.unlock("A02", PULSE_S))
        assert sorted(bus.boards[0].unlocks) == [0, 1]
        assert bus.boards[1].unlocks == []
        await eventually(
            lambda: set(locker.read().values()) == {DoorState.OPEN}, what="all doors open"
        )

    run_locker(locker, scenario)
    assert bytes.fromhex("02 00 30 03 35") in bus.frames()
    assert bytes.fromhex("02 10 30 03 45") in bus.frames()


def test_port_that_cannot_open_is_a_hardware_error() -> None:
    locker = Rs485Locker(CHANNELS, port="/nonexistent/tty", **FAST)

    async def scenario() -> None:
        with pytest.raises(HardwareError, match="cannot open"):
            await locker.start()
        with pytest.raises(HardwareError, match="not started"):
            await locker.unlock("A01", PULSE_S)

    run_locker(locker, scenario)


@pytest.mark.parametrize(
    "channels",
    [{}, {"A01": (0, 0)}, {"A01": (0, 17)}, {"A01": (16, 1)}, {"A01": (0, 1), "A02": (0, 1)}],
)
def test_bad_channel_maps_are_rejected(channels: dict[str, tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        Rs485Locker(channels)


def test_the_unlock_time_is_left_alone_unless_asked(bus: KerongBus) -> None:
    locker = make_locker(bus)

    async def scenario() -> None:
        await locker.start()

    run_locker(locker, scenario)
    assert all(frame[2] != kerong.CMD_SET_UNLOCK_TIME for frame in bus.frames())


def test_a_board_that_does_not_confirm_its_unlock_time_is_never_pulsed(bus: KerongBus) -> None:
    locker = make_locker(bus, set_unlock_time=True, retries=0)
    bus.busy_board(1, 1)  # ignores the 0x37 frame, then answers polls as usual

    async def scenario() -> None:
        await locker.start()
        assert not locker.healthy()
        await locker.unlock("A01", PULSE_S)  # board 0 confirmed: works
        with pytest.raises(HardwareError, match="did not confirm its unlock time"):
            await locker.unlock("A03", PULSE_S)

    run_locker(locker, scenario)
    assert bus.boards[0].unlocks == [0]
    assert bus.boards[1].unlocks == []


def test_an_unlock_for_a_board_known_offline_sends_nothing(bus: KerongBus) -> None:
    # issue 16: such an opening used to be accepted and its unlock frames sent into the void
    locker = make_locker(bus)

    async def scenario() -> None:
        await locker.start()
        bus.silent_board(1, True)
        await eventually(lambda: locker.offline_boards() == {1}, what="board 1 offline")
        bus.clear_log()
        started = asyncio.get_running_loop().time()
        with pytest.raises(HardwareError, match="board 1 is not answering"):
            await locker.unlock("A03", PULSE_S)
        assert asyncio.get_running_loop().time() - started < 0.02  # at once, no timeout
        unlocks = [f for f in bus.frames() if len(f) > 2 and f[2] == 0x31]
        assert unlocks == []
        await locker.unlock("A01", PULSE_S)  # the board that answers still works

    run_locker(locker, scenario)
