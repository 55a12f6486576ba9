"""One test per safety rule of the hardware (docs/hardware.md, "Safety rules").

Each test fails if its rule is taken out. Most run the real agent on gpiozero's mock pins with
the test-side physics of tests/hardware/physics.py (a pulse springs a door open, a person
shuts it); relay timings are read from the mock pins' own state history.

Rules whose tests already live elsewhere are pointed to, not duplicated (see
``RULES_TESTED_ELSEWHERE``, checked below so the pointers cannot go stale).
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

from locker_agent.app.ports.hardware import HardwareError
from locker_agent.app.safety import SafeLocks
from locker_agent.config import load_config
from locker_agent.hardware.gpio import GpioLocker
from locker_agent.hardware.simulated import SimulatedLocker
from locker_agent.runtime.daemon import Agent, build_agent
from tests.hardware.contract import eventually, run
from tests.hardware.physics import LockerPhysics, RelayPin

LOCKS = {"A01": 17, "A02": 22, "A03": 24}
SENSORS = {"A01": 27, "A02": 23, "A03": 25}
TOLERANCE_S = 0.03

RULES_TESTED_ELSEWHERE = {
    "a door not opened after its pulse is door_jammed: one retry, then out of service, "
    "the customer's code kept":
        "tests.test_service:"
        "test_a_jammed_door_is_pulsed_again_then_taken_out_of_service_keeping_the_code",
    "a door opened with no unlock in progress is door_forced":
        "tests.test_service:test_a_door_opened_without_an_unlock_is_reported_forced",
    "a door open longer than door_left_open_alarm_s raises door_left_open, repeating "
    "until it closes":
        "tests.test_service:test_a_door_left_open_raises_an_alarm_that_repeats_until_it_closes",
    "a restart never re-pulses an unlock cut off before its door opened":
        "tests.test_service:test_restart_abandons_an_unlock_whose_door_never_opened_and_opens_nothing",
    "every driver de-energises a cancelled pulse before the cancellation propagates":
        "tests.hardware.contract:"
        "LockDriverContract.test_cancelled_unlock_de_energises_before_the_cancel_propagates",
}


def gpio_config(tmp_path: Path, **policies: float) -> Path:
    values = {"lock_pulse_ms": 100, "unlock_gap_ms": 0, "max_simultaneous_unlocks": 1,
              "door_open_timeout_s": 5} | policies
    lines = [
        'locker_id = "safety-locker"', f'state_dir = "{tmp_path / "state"}"',
        '[hardware]', 'backend = "gpio"', '[hardware.gpio]', 'pin_factory = "mock"',
        'door_debounce_ms = 0', 'door_poll_interval_s = 0.05',
        '[mqtt]', 'enabled = false', '[policies]',
        *(f"{key} = {value}" for key, value in values.items()),
    ]
    for cid in LOCKS:
        lines += ["[[compartments]]", f'id = "{cid}"', 'size = "S"',
                  f"lock = {LOCKS[cid]}", f"sensor = {SENSORS[cid]}"]
    path = tmp_path / "locker.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def physics_for(agent: Agent, **options: Any) -> LockerPhysics:
    assert isinstance(agent.locks, SafeLocks) and isinstance(agent.locks.driver, GpioLocker)
    return LockerPhysics(agent.locks.driver.pin_factory, LOCKS, SENSORS, **options)


@asynccontextmanager
async def running(
    config: Path, setup: Callable[[LockerPhysics], None] = lambda physics: None, **options: Any
) -> AsyncIterator[tuple[Agent, LockerPhysics]]:
    agent = build_agent(load_config(config))
    physics = physics_for(agent, **options)
    setup(physics)
    await agent.start()
    try:
        yield agent, physics
    finally:
        await agent.stop()
        physics.close()


def operator_open(agent: Agent, compartment_id: str) -> None:
    service = agent.service
    service.apply(partial(service.locker.begin_operator_open, compartment_id, actor="test",
                          reason="safety rule", now=service.now()))


def event_types(agent: Agent, compartment_id: str | None = None) -> list[str]:
    return [e.type for e in agent.store.all_events()
            if compartment_id is None or e.compartment_id == compartment_id]


# -- rule: a lock is energised only for its pulse (default 500 ms, hard cap 2 s) --------------


def test_pulse_cap_a_lock_is_energised_only_for_its_pulse_never_over_2_s() -> None:
    factory = MockFactory()
    physics = LockerPhysics(factory, LOCKS, SENSORS, close_after_s=None)
    locks = SafeLocks(GpioLocker(LOCKS, SENSORS, pin_factory=factory), gap_s=0)

    async def scenario() -> None:
        await locks.start()
        try:
            with pytest.raises(ValueError, match=r"<= 2\.0"):
                await locks.unlock("A01", 2.5)
            await locks.unlock("A02", 0.1)
        finally:
            await locks.stop()

    try:
        run(scenario())
        relay_a01: RelayPin = physics.relays["A01"]
        relay_a02: RelayPin = physics.relays["A02"]
        assert relay_a01.high_intervals() == []  # refused before the relay moved
        [(start, end)] = relay_a02.high_intervals()
        assert 0.1 - TOLERANCE_S <= end - start <= 0.1 + TOLERANCE_S
    finally:
        physics.close()
        factory.reset()


# -- rule: all outputs off at start, on shutdown and on cancellation ---------------------------


class WeldedRelayLocker(SimulatedLocker):
    """A relay whose contacts welded shut: its lock reads energised whatever is done."""

    def energised(self) -> frozenset[str]:
        return frozenset({"A01"})


def test_all_off_at_start_a_lock_found_energised_stops_start_up() -> None:
    driver = WeldedRelayLocker(LOCKS)
    locks = SafeLocks(driver)

    async def scenario() -> None:
        with pytest.raises(HardwareError, match="energised right after start: A01"):
            await locks.start()
        assert not driver.started  # the driver was told to let everything go

    run(scenario())


def test_all_off_on_shutdown_even_in_the_middle_of_a_pulse(tmp_path: Path) -> None:
    """A stop lets the pulse under way finish (never longer) and leaves every relay off;
    a driver stopped outright cuts the pulse short (the contract's
    test_stop_de_energises_at_once_and_is_idempotent)."""
    config = gpio_config(tmp_path, lock_pulse_ms=300)

    async def scenario() -> None:
        async with running(config, close_after_s=None) as (agent, physics):
            operator_open(agent, "A01")
            await eventually(lambda: physics.relays["A01"].state, what="relay on")
            await agent.stop()
            assert not any(relay.state for relay in physics.relays.values())
            [(start, end)] = physics.relays["A01"].high_intervals()
            assert end - start <= 0.3 + TOLERANCE_S

            await agent.locks.start()
            pulse = asyncio.get_running_loop().create_task(agent.locks.unlock("A02", 1.5))
            await eventually(lambda: physics.relays["A02"].state, what="relay on")
            await agent.locks.stop()
            assert not physics.relays["A02"].state  # at once, not after 1.5 s
            await asyncio.gather(pulse, return_exceptions=True)

    run(scenario())


class ForgetfulGpioLocker(GpioLocker):
    """A driver with the classic bug: it switches the relay off only if the sleep finishes."""

    async def unlock(self, compartment_id: str, pulse_s: float) -> None:
        relay = self._relays[compartment_id]
        relay.on()
        await asyncio.sleep(pulse_s)
        relay.off()


def test_all_off_on_cancel_a_driver_that_leaves_a_lock_on_is_switched_off() -> None:
    factory = MockFactory()
    physics = LockerPhysics(factory, LOCKS, SENSORS, close_after_s=None)
    locks = SafeLocks(ForgetfulGpioLocker(LOCKS, SENSORS, pin_factory=factory))

    async def scenario() -> None:
        await locks.start()
        try:
            pulse = asyncio.get_running_loop().create_task(locks.unlock("A01", 1.5))
            await eventually(lambda: physics.relays["A01"].state, what="relay on")
            pulse.cancel()
            await asyncio.gather(pulse, return_exceptions=True)
            assert not physics.relays["A01"].state
            assert not locks.healthy() and locks.fault is not None  # the watchdog will see it
        finally:
            await locks.stop()

    try:
        run(scenario())
    finally:
        physics.close()
        factory.reset()


# -- rule: a power budget (at most N locks at once), further unlocks queue with a gap --------


def test_power_budget_one_lock_at_a_time_with_a_gap_and_reloadable(tmp_path: Path) -> None:
    config = gpio_config(tmp_path, lock_pulse_ms=100, unlock_gap_ms=150)

    def intervals(physics: LockerPhysics) -> list[tuple[float, float]]:
        return sorted(i for relay in physics.relays.values() for i in relay.high_intervals())

    async def scenario() -> None:
        async with running(config, close_after_s=0.05) as (agent, physics):
            for cid in LOCKS:
                operator_open(agent, cid)
            await eventually(lambda: event_types(agent).count("unlock_pulsed") == 3,
                             timeout_s=5, what="three pulses")
            # recorded as each pulse starts: let the last one end
            await eventually(lambda: len(intervals(physics)) == 3, what="three pulses over")
            pulses = intervals(physics)
            assert len(pulses) == 3
            for (_, end), (start, _) in itertools.pairwise(pulses):
                assert start - end >= 0.15 - TOLERANCE_S, pulses  # queued, with the gap

            # SIGHUP reload: a bigger budget and no gap apply to the running locker
            service = agent.service
            service.set_unlock_policy(replace(service.unlock_policy, max_simultaneous=2, gap_s=0.0))
            await eventually(lambda: not agent.service.locker.intents, what="doors shut")
            for relay in physics.relays.values():
                relay.clear_states()
            operator_open(agent, "A01")
            operator_open(agent, "A02")
            await eventually(lambda: event_types(agent).count("unlock_pulsed") == 5,
                             timeout_s=5, what="two more pulses")
            await eventually(lambda: len(intervals(physics)) == 2, what="both pulses over")
            (_, first_end), (second_start, _) = intervals(physics)
            assert second_start < first_end  # both energised at once now

    run(scenario())


# -- rule: at start-up every door is read and reconciled; a door found open is reported ------


def test_start_up_reports_a_door_found_open(tmp_path: Path) -> None:
    config = gpio_config(tmp_path)

    async def first_run() -> None:
        async with running(config) as (agent, _):
            assert "door_forced" not in event_types(agent)

    async def after_restart() -> None:
        def opened_while_we_were_down(physics: LockerPhysics) -> None:
            physics.reeds["A02"].shut = False

        async with running(config, opened_while_we_were_down) as (agent, _):
            assert event_types(agent, "A02")[-1] == "door_forced"
            assert "door_forced" not in event_types(agent, "A01")

    run(first_run())
    run(after_restart())


# -- pointers --------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", sorted(RULES_TESTED_ELSEWHERE))
def test_the_rules_tested_elsewhere_still_have_their_test(rule: str) -> None:
    module_name, _, qualified = RULES_TESTED_ELSEWHERE[rule].partition(":")
    found: object = importlib.import_module(module_name)
    for part in qualified.split("."):
        found = getattr(found, part)
    assert callable(found), rule
