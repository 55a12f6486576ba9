"""The service end to end, in-process: real SQLite file, simulated locks and doors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from locker_agent.app.health import LoopLag
from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.config import load_config
from locker_agent.domain.model import AssignmentStatus, CompartmentState, DoorState
from locker_agent.runtime.daemon import Agent, build_agent
from tests.conftest import ConfigWriter

HOUR = 3600.0


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[Agent]:
    agent = build_agent(load_config(config))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def event_types(agent: Agent) -> list[str]:
    return [e.type for e in agent.store.all_events()]


async def deposit(agent: Agent, assignment_id: str, code: str, *, size: str = "S") -> str:
    """Reserve a parcel and have the courier put it in; returns its compartment."""
    service, simulator = agent.service, agent.simulator
    assert simulator is not None
    now = service.now()
    service.apply(
        lambda: service.locker.reserve(
            assignment_id, pickup_code=code, size=size, now=now,
            hold_seconds=72 * HOUR, reservation_ttl_s=24 * HOUR,
        )
    )
    compartment = service.locker.assignments[assignment_id].compartment_id
    assert compartment is not None
    service.apply(lambda: service.locker.begin_deposit(assignment_id, actor="c-1", now=now))
    await until(lambda: service.locker.compartments[compartment].door is DoorState.OPEN)
    simulator.close_door(compartment)
    await until(
        lambda: service.locker.assignments[assignment_id].status is AssignmentStatus.DEPOSITED
    )
    return compartment


def test_pickup_opens_the_door_records_intent_first_and_frees_the_compartment(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with running(write_config()) as agent:
            assert agent.simulator is not None
            compartment = await deposit(agent, "p-1", "48291300")
            outcome = await agent.service.submit_code(CodeEntry("keypad", "48291300"))
            assert outcome.ok, outcome.message
            assert outcome.compartments == (compartment,)
            assert f"Compartment {compartment} is opening" in outcome.message
            await until(lambda: agent.service.locker.compartments[compartment].door
                        is DoorState.OPEN)
            agent.simulator.close_door(compartment)
            await until(lambda: "p-1" not in agent.service.locker.assignments)
            assert agent.store.archived_status("p-1") is AssignmentStatus.PICKED_UP
            assert agent.service.locker.state_of(compartment) is CompartmentState.FREE
            await until(lambda: agent.simulator is not None
                        and agent.simulator.energised() == frozenset(), 1.0)
            types = event_types(agent)
            pickup = types[types.index("deposited") + 1:]
            assert pickup.index("unlock_requested") < pickup.index("door_opened")
            assert "unlock_pulsed" in pickup
            assert pickup[pickup.index("picked_up") - 1] == "door_closed"
            # the code was single-use
            again = await agent.service.submit_code(CodeEntry("keypad", "48291300"))
            assert not again.ok

    run(scenario())


def test_wrong_code_opens_nothing_and_says_so(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with running(write_config()) as agent:
            await deposit(agent, "p-1", "48291300")
            pulses_before = list(agent.simulator.pulses) if agent.simulator else []
            outcome = await agent.service.submit_code(CodeEntry("keypad", "00000000"))
            assert not outcome.ok
            assert outcome.reason == "unknown"
            assert outcome.message
            await asyncio.sleep(0.1)
            assert agent.simulator is not None and agent.simulator.pulses == pulses_before

    run(scenario())


def test_a_jammed_door_is_pulsed_again_then_taken_out_of_service_keeping_the_code(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with running(write_config(door_open_timeout=0.2)) as agent:
            assert agent.simulator is not None
            compartment = await deposit(agent, "p-1", "48291300")
            agent.simulator.jam(compartment)
            pulses_before = len(agent.simulator.pulses)
            assert (await agent.service.submit_code(CodeEntry("keypad", "48291300"))).ok
            await until(lambda: "unlock_abandoned" in event_types(agent))
            jams = [e for e in agent.store.all_events() if e.type == "door_jammed"]
            assert [e.data["attempt"] for e in jams] == [1, 2]  # one retry, then give up
            assert len(agent.simulator.pulses) == pulses_before + 2
            abandoned = [e for e in agent.store.all_events() if e.type == "unlock_abandoned"]
            assert abandoned[-1].data["reason"] == "door_not_opened"
            await until(lambda: agent.service.locker.state_of(compartment)
                        is CompartmentState.OUT_OF_SERVICE)
            # the code was not used up: the parcel is still there, behind a broken door
            credential = agent.service.locker.authenticate("48291300", now=agent.service.now())
            assert credential is not None
            refused = await agent.service.submit_code(CodeEntry("keypad", "48291300"))
            assert not refused.ok and refused.reason == "compartment_unavailable"
            assert "Your code still works" in refused.message
            # repaired and back in service, the same code opens it
            agent.simulator.jam(compartment, False)
            agent.service.apply(lambda: agent.service.locker.set_compartment_service(
                compartment, in_service=True, reason=None, now=agent.service.now()))
            assert (await agent.service.submit_code(CodeEntry("keypad", "48291300"))).ok

    run(scenario())


def test_a_door_left_open_raises_an_alarm_that_repeats_until_it_closes(
    write_config: ConfigWriter, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from locker_agent.app import service as service_module

    monkeypatch.setattr(service_module, "TICK_INTERVAL_S", 0.02)
    path = write_config(policies={"door_left_open_alarm_s": 0.15})

    async def scenario() -> None:
        async with running(path) as agent:
            assert agent.simulator is not None
            agent.simulator.open_door("A03", force=True)
            await until(lambda: event_types(agent).count("door_left_open") >= 2)
            agent.simulator.close_door("A03")
            await asyncio.sleep(0.1)
            count = event_types(agent).count("door_left_open")
            await asyncio.sleep(0.4)
            assert event_types(agent).count("door_left_open") == count  # stopped once closed
            alarms = [e for e in agent.store.all_events() if e.type == "door_left_open"]
            assert [e.data["alarm"] for e in alarms[:2]] == [1, 2]

    run(scenario())


def test_a_door_opened_without_an_unlock_is_reported_forced(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with running(write_config()) as agent:
            assert agent.simulator is not None
            agent.simulator.open_door("A03", force=True)
            await until(lambda: "door_forced" in event_types(agent))
            forced = [e for e in agent.store.all_events() if e.type == "door_forced"]
            assert forced[0].compartment_id == "A03"

    run(scenario())


def test_restart_abandons_an_unlock_whose_door_never_opened_and_opens_nothing(
    write_config: ConfigWriter, clean_env: None
) -> None:
    config = write_config(auto_open=False)
    agent = build_agent(load_config(config))
    now = agent.service.now()
    agent.service.apply(
        lambda: agent.service.locker.begin_operator_open(
            "A02", actor="operator-7", reason="inspection", now=now
        )
    )  # recorded, never pulsed: as if the power failed right after the commit
    agent.store.close()

    async def scenario() -> None:
        async with running(config) as restarted:
            assert restarted.simulator is not None
            assert restarted.simulator.pulses == []
            assert "A02" not in restarted.service.locker.intents
            last = restarted.store.all_events()[-1]
            assert (last.type, last.data["reason"]) == (
                "unlock_abandoned", "restarted_before_door_opened"
            )

    run(scenario())


def test_hold_period_expiry_is_committed_by_the_clock(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with running(write_config()) as agent:
            await deposit(agent, "p-1", "48291300")
            assert agent.service.tick(71 * HOUR) == []
            expired = agent.service.tick(2 * HOUR)
            assert [e.type for e in expired] == ["expired"]
            outcome = await agent.service.submit_code(CodeEntry("keypad", "48291300"))
            assert (outcome.ok, outcome.reason) == (False, "expired")

    run(scenario())


def test_a_failed_commit_leaves_memory_equal_to_the_file(
    write_config: ConfigWriter, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = build_agent(load_config(write_config()))
    service = agent.service
    now = service.now()

    def broken_commit(*_: object, **__: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(agent.store, "commit", broken_commit)
        with pytest.raises(OSError):
            service.apply(
                lambda: service.locker.reserve(
                    "p-1", pickup_code="11122200", size="S", now=now,
                    hold_seconds=HOUR, reservation_ttl_s=HOUR,
                )
            )
    assert "p-1" not in service.locker.assignments
    assert all(not c.assignment_ids for c in service.locker.compartments.values())
    # and the same reservation goes through once the disk is back
    service.apply(
        lambda: service.locker.reserve(
            "p-1", pickup_code="11122200", size="S", now=now,
            hold_seconds=HOUR, reservation_ttl_s=HOUR,
        )
    )
    assert agent.store.archived_status("p-1") is AssignmentStatus.RESERVED
    agent.store.close()


def test_codes_never_reach_the_logs(
    write_config: ConfigWriter, clean_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with running(write_config(auto_close=0.05)) as agent:
            await deposit(agent, "p-1", "93745100")
            await agent.service.submit_code(CodeEntry("keypad", "93745100"))
            await agent.service.submit_code(CodeEntry("keypad", "55512300"))
            await until(lambda: "p-1" not in agent.service.locker.assignments)

    run(scenario())
    text = "\n".join(
        f"{r.getMessage()} {getattr(r, 'fields', '')} {r.args}" for r in caplog.records
    )
    assert "picked_up" in text  # the flow was logged...
    assert "93745100" not in text and "55512300" not in text  # ...but never a code


def test_shutdown_lets_a_pulse_finish_and_leaves_every_lock_off(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        agent = build_agent(load_config(write_config()))
        await agent.start()
        now = agent.service.now()
        agent.service.apply(
            lambda: agent.service.locker.begin_operator_open(
                "A01", actor="op", reason="test", now=now
            )
        )
        await until(lambda: bool(agent.simulator and agent.simulator.energised()), 2)
        await agent.stop()
        assert agent.simulator is not None
        assert agent.simulator.energised() == frozenset()
        assert [p[0] for p in agent.simulator.pulses] == ["A01"]
        assert "unlock_pulsed" in event_types(agent)

    run(scenario())


def test_a_silent_lock_board_takes_its_compartments_out_until_it_answers(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with running(write_config()) as agent:
            service = agent.service
            service.apply(lambda: service.locker.set_compartment_service(
                "A02", in_service=False, reason="cleaning", now=service.now()))
            service.board_changed(1, False, ("A01", "A02", "A03"))
            assert not service.locker.compartments["A01"].in_service
            outcome = await deposit_refused(agent)
            assert outcome
            # a fault found while the board was silent is not undone by its return
            service.apply(lambda: service.locker.set_compartment_service(
                "A03", in_service=False, reason="jammed", now=service.now()))
            service.board_changed(1, True, ("A01", "A02", "A03"))
            assert service.locker.compartments["A01"].in_service
            assert service.locker.compartments["A03"].out_of_service_reason == "jammed"
            assert service.locker.compartments["A02"].out_of_service_reason == "cleaning"
            offline = [e for e in agent.store.all_events() if e.type == "board_offline"]
            assert offline[0].data == {"board": 1, "compartments": ["A01", "A02", "A03"]}
            assert "board_online" in event_types(agent)

    async def deposit_refused(agent: Agent) -> bool:
        service = agent.service
        service.apply(lambda: service.locker.reserve(
            "p-9", pickup_code="99001122", size="S", now=service.now(),
            hold_seconds=HOUR, reservation_ttl_s=HOUR))
        # the parcel is placed in a compartment whose board answers
        return service.locker.assignments["p-9"].compartment_id not in ("A01", "A02", "A03")

    run(scenario())


def test_the_event_loop_lag_is_measured() -> None:
    async def stall() -> LoopLag:
        lag = LoopLag(interval_s=0.05)
        watch = asyncio.create_task(lag.run())
        await asyncio.sleep(0.12)
        time.sleep(0.3)  # the loop is blocked: the next timer runs late
        await asyncio.sleep(0.12)
        watch.cancel()
        return lag

    lag = asyncio.run(stall())
    assert 0.2 <= lag.max_s < 1.0, lag.max_s
