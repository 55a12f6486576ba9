"""The whole locker on the shipped example-rs485.toml, against KR-CU16 boards as their public
notes describe them (an idle board answers ff ff: every door closed).

hw-test passes, a pickup completes with one unlock frame per opening even when the door is
shut again within 200 ms, and hw-test names a board's error at once instead of waiting out its
timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.config import load_config
from locker_agent.domain.model import AssignmentStatus, DoorState
from locker_agent.hardware import kerong
from locker_agent.ops.commissioning import hw_test
from locker_agent.runtime.daemon import Agent, build_agent

from .kerong_emulator import KerongBus

EXAMPLE = Path(__file__).parents[2] / "config" / "example-rs485.toml"
ON_BOARD_1 = "C05"  # lock "1:1"
CODE = "73190246"


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: None) -> None:
    """The example as shipped, but for what only a real site has: its port, broker, keys."""
    for key, value in {
        "STATE_DIR": str(tmp_path / "state"),
        "MQTT__ENABLED": "false",
        "API__ENABLED": "false",
        "SECURITY__OPERATOR_PUBLIC_KEYS": "[]",
        "POLICIES__DOOR_OPEN_TIMEOUT_S": "2",
    }.items():
        monkeypatch.setenv(f"LOCKER_AGENT_{key}", value)


@asynccontextmanager
async def example_locker(
    bus: KerongBus, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Agent]:
    monkeypatch.setenv("LOCKER_AGENT_HARDWARE__RS485__PORT", bus.port)
    config = load_config(EXAMPLE)
    assert config.hardware.rs485.lock_bit_open_when_set is False  # as shipped
    agent = build_agent(config, cloud=False)
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def bus() -> Iterator[KerongBus]:
    # a customer pushes each sprung door shut again 200 ms after it opened
    with KerongBus(boards=(0, 1), door_open_for_s=0.2) as emulated:
        yield emulated


def unlock_count(bus: KerongBus) -> int:
    return sum(len(f) > 2 and f[2] == kerong.CMD_UNLOCK for f in bus.frames())


@pytest.mark.usefixtures("example_env")
def test_hw_test_passes_on_the_example_config(
    bus: KerongBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with example_locker(bus, monkeypatch) as agent:
            lines: list[str] = []
            results = await hw_test(agent, ["A01", ON_BOARD_1], open_timeout_s=3,
                                    close_timeout_s=3, out=lines.append)
            assert [r.problem for r in results] == [None, None], lines
            assert not any("other way round" in line for line in lines)
            assert unlock_count(bus) == 2

    asyncio.run(scenario())


@pytest.mark.usefixtures("example_env")
def test_a_pickup_on_the_example_config_pulses_once_per_opening(
    bus: KerongBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 16: a 200 ms opening was missed by the 0.5 s poll, and the lock pulsed again
    async def scenario() -> None:
        async with example_locker(bus, monkeypatch) as agent:
            service, locker = agent.service, agent.service.locker
            service.apply(lambda: locker.reserve(
                "p-1", pickup_code=CODE, now=service.now(), hold_seconds=3600,
                reservation_ttl_s=3600, size="S",
            ))
            service.apply(lambda: locker.begin_deposit(
                "p-1", actor="courier:dhl-7", now=service.now()))
            await until(lambda: locker.assignments["p-1"].status is AssignmentStatus.DEPOSITED)
            outcome = await service.submit_code(CodeEntry("keypad", CODE))
            assert outcome.ok, outcome.message
            await until(lambda: "p-1" not in locker.assignments)
            await asyncio.sleep(2.5)  # past door_open_timeout_s: no jam, no second pulse
            events = [e.type for e in agent.store.all_events()]
            assert "door_jammed" not in events
            assert events.count("door_opened") == 2 and events.count("door_closed") == 2
            assert agent.store.archived_status("p-1") is AssignmentStatus.PICKED_UP
            assert unlock_count(bus) == 2

    asyncio.run(scenario())


@pytest.mark.usefixtures("example_env")
@pytest.mark.parametrize(
    ("fault", "named"),
    [("silent", "board 1 is not answering"), ("corrupt", "bad checksum")],
)
def test_hw_test_names_the_board_error_and_stops_waiting(
    bus: KerongBus, monkeypatch: pytest.MonkeyPatch, fault: str, named: str
) -> None:
    async def scenario() -> None:
        async with example_locker(bus, monkeypatch) as agent:
            if fault == "silent":
                bus.silent_board(1)
                await until(lambda: agent.service.locker.compartments[ON_BOARD_1].door
                            is DoorState.UNKNOWN)
            else:
                bus.corrupt_next(10_000)  # a wrong baud rate or a noisy bus: nothing reads
            bus.clear_log()
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = await hw_test(agent, [ON_BOARD_1], open_timeout_s=10,
                                    close_timeout_s=1, out=lambda line: None)
            assert loop.time() - started < 5  # not the 10 s open timeout
            problem = str(results[0].problem)
            assert "the lock board reported an error" in problem and named in problem
            assert "RS485 wiring" in problem
            assert unlock_count(bus) <= 1
            events = [e.type for e in agent.store.all_events() if e.compartment_id == ON_BOARD_1]
            if fault == "silent":  # refused before anything was sent: no pulse on record
                assert unlock_count(bus) == 0
                assert "unlock_pulsed" not in events, events
            assert events[-1] == "unlock_abandoned"

    asyncio.run(scenario())


@pytest.mark.usefixtures("example_env")
def test_a_code_for_a_parcel_behind_a_silent_board_is_refused_at_once(
    bus: KerongBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with example_locker(bus, monkeypatch) as agent:
            service, locker = agent.service, agent.service.locker
            service.apply(lambda: locker.reserve(
                "p-1", pickup_code=CODE, now=service.now(), hold_seconds=3600,
                reservation_ttl_s=3600, size="M", compartment_id=ON_BOARD_1,
            ))
            service.apply(lambda: locker.begin_deposit(
                "p-1", actor="courier:dhl-7", now=service.now()))
            await until(lambda: locker.assignments["p-1"].status is AssignmentStatus.DEPOSITED)
            bus.silent_board(1)
            await until(lambda: not locker.compartments[ON_BOARD_1].in_service)
            bus.clear_log()
            outcome = await service.submit_code(CodeEntry("keypad", CODE))
            assert not outcome.ok and outcome.reason == "compartment_unavailable"
            assert "Your code still works" in outcome.message
            assert outcome.retry_after_s is None
            assert unlock_count(bus) == 0
            refused = [e for e in agent.store.all_events() if e.type == "code_refused"]
            assert [e.data["reason"] for e in refused] == ["compartment_unavailable"]
            bus.silent_board(1, False)  # back: the same code opens the door
            await until(lambda: locker.compartments[ON_BOARD_1].in_service)
            assert (await service.submit_code(CodeEntry("keypad", CODE))).ok
            await until(lambda: "p-1" not in locker.assignments)
            assert unlock_count(bus) == 1

    asyncio.run(scenario())
