"""Contract tests that every hardware driver must pass, simulated or real.

Subclass a contract in a ``test_*.py`` module, in a class whose name starts with ``Test``, and
implement its factory (plus, for door sensors, the hooks that move a door the way the world
would: the simulated locker opens its door, a GPIO driver drives a mock pin)::

    class TestGpioLocks(LockDriverContract):
        def make_lock_driver(self) -> LockDriver:
            return GpioLockDriver(channels_for(self.compartment_ids), pin_factory=...)

pytest makes a fresh instance per test, so a factory may keep what the hooks need on ``self``;
put teardown of outside resources (mock pin factories, ptys) in an autouse fixture.
Timing knobs are class attributes a slower backend may raise.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

import pytest

from locker_agent.app.ports.hardware import DoorSensors, HardwareError, LockDriver
from locker_agent.domain.model import DoorState

COMPARTMENTS: tuple[str, ...] = ("A01", "A02", "A03")

T = TypeVar("T")
D = TypeVar("D")


def run(coro: Coroutine[Any, Any, T], *, timeout_s: float = 10.0) -> T:
    """Run one test scenario on a fresh event loop; a hung scenario fails instead of hanging."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def eventually(
    predicate: Callable[[], bool], *, timeout_s: float = 1.0, what: str = "condition"
) -> None:
    """Wait until ``predicate()`` holds, polling; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.001)


async def _run_then_stop(
    device: D, stop: Callable[[], Awaitable[None]], scenario: Callable[[D], Awaitable[None]]
) -> None:
    try:
        await scenario(device)
    finally:
        await stop()


class LockDriverContract(ABC):
    """What every LockDriver promises."""

    compartment_ids: ClassVar[tuple[str, ...]] = COMPARTMENTS
    pulse_s: ClassVar[float] = 0.05
    """A short pulse, to keep the suite fast."""
    observe_pulse_s: ClassVar[float] = 0.2
    """A pulse long enough to watch the lock while it is energised."""
    late_s: ClassVar[float] = 0.25
    """How much later than its pulse an unlock may return."""

    @abstractmethod
    def make_lock_driver(self) -> LockDriver:
        """Build a driver, not yet started, over ``self.compartment_ids``."""

    def run_with_driver(self, scenario: Callable[[LockDriver], Awaitable[None]]) -> None:
        async def main() -> None:
            driver = self.make_lock_driver()
            await _run_then_stop(driver, driver.stop, scenario)

        run(main())

    def test_start_leaves_nothing_energised(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    def test_unlock_energises_exactly_that_lock_for_the_pulse(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            began = time.monotonic()
            pulse = asyncio.create_task(driver.unlock("A02", self.observe_pulse_s))
            await eventually(
                lambda: driver.energised() == frozenset({"A02"}),
                timeout_s=self.observe_pulse_s,
                what="only A02 energised",
            )
            await pulse
            took = time.monotonic() - began
            assert driver.energised() == frozenset()
            assert self.observe_pulse_s - 0.01 <= took <= self.observe_pulse_s + self.late_s

        self.run_with_driver(scenario)

    def test_every_compartment_unlocks_and_ends_de_energised(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            for compartment_id in self.compartment_ids:
                await driver.unlock(compartment_id, self.pulse_s)
                assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    @pytest.mark.parametrize("pulse_s", [0.0, -0.05, 2.001, 10.0, math.inf, math.nan])
    def test_unsafe_pulse_is_rejected(self, pulse_s: float) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            with pytest.raises(ValueError):
                await driver.unlock("A01", pulse_s)
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    def test_unknown_compartment_is_a_hardware_error(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            with pytest.raises(HardwareError) as raised:
                await driver.unlock("Z99", self.pulse_s)
            assert raised.value.compartment_id == "Z99"
            assert "Z99" in str(raised.value)
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    def test_cancelled_unlock_de_energises_before_the_cancel_propagates(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            began = time.monotonic()
            pulse = asyncio.create_task(driver.unlock("A01", 1.0))
            await eventually(lambda: "A01" in driver.energised(), what="A01 energised")
            pulse.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pulse
            assert driver.energised() == frozenset()
            assert time.monotonic() - began < 1.0

        self.run_with_driver(scenario)

    def test_pulses_on_one_compartment_never_overlap(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            began = time.monotonic()
            await asyncio.gather(
                driver.unlock("A03", self.pulse_s), driver.unlock("A03", self.pulse_s)
            )
            assert time.monotonic() - began >= 2 * self.pulse_s - 0.01
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    def test_stop_de_energises_at_once_and_is_idempotent(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            pulse = asyncio.create_task(driver.unlock("A03", 1.0))
            await eventually(lambda: "A03" in driver.energised(), what="A03 energised")
            await driver.stop()
            assert driver.energised() == frozenset()
            await driver.stop()
            assert driver.energised() == frozenset()
            pulse.cancel()
            await asyncio.gather(pulse, return_exceptions=True)
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    def test_stop_before_start_is_harmless(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.stop()
            await driver.stop()
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    def test_stopped_driver_refuses_to_unlock(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            await driver.stop()
            with pytest.raises(HardwareError):
                await driver.unlock("A01", self.pulse_s)
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)

    def test_restarts_after_stop(self) -> None:
        async def scenario(driver: LockDriver) -> None:
            await driver.start()
            await driver.start()
            await driver.stop()
            await driver.start()
            assert driver.energised() == frozenset()
            await driver.unlock("A01", self.pulse_s)
            assert driver.energised() == frozenset()

        self.run_with_driver(scenario)


class DoorRecorder:
    """A door listener that remembers what it was told and on which thread."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, DoorState]] = []
        self.threads: set[int] = set()

    def __call__(self, compartment_id: str, state: DoorState) -> None:
        self.changes.append((compartment_id, state))
        self.threads.add(threading.get_ident())


class DoorSensorsContract(ABC):
    """What every DoorSensors promises."""

    compartment_ids: ClassVar[tuple[str, ...]] = COMPARTMENTS
    notify_timeout_s: ClassVar[float] = 1.0
    """How long a real change may take to reach listeners (debouncing, polling)."""
    settle_s: ClassVar[float] = 0.1
    """How long to wait for a notification that must not come."""

    @abstractmethod
    def make_door_sensors(self) -> DoorSensors:
        """Build sensors, not yet started, over ``self.compartment_ids``, every door shut."""

    @abstractmethod
    def open_door_physically(self, compartment_id: str) -> None:
        """Open the door as a person would; may be called from any thread."""

    @abstractmethod
    def close_door_physically(self, compartment_id: str) -> None:
        """Shut the door as a person would; may be called from any thread."""

    def run_with_sensors(self, scenario: Callable[[DoorSensors], Awaitable[None]]) -> None:
        async def main() -> None:
            sensors = self.make_door_sensors()
            await _run_then_stop(sensors, sensors.stop, scenario)

        run(main())

    async def start_and_settle(self, sensors: DoorSensors) -> None:
        """Start the sensors and wait until every door reads closed."""
        await sensors.start()
        await eventually(
            lambda: all(state is DoorState.CLOSED for state in sensors.read().values()),
            timeout_s=self.notify_timeout_s,
            what="every door known closed",
        )

    async def wait_for_changes(self, recorder: DoorRecorder, count: int) -> None:
        await eventually(
            lambda: len(recorder.changes) >= count,
            timeout_s=self.notify_timeout_s,
            what=f"{count} door change(s)",
        )
        await asyncio.sleep(self.settle_s)  # a duplicate would arrive now

    def test_read_covers_every_compartment(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            before = sensors.read()
            assert set(before) == set(self.compartment_ids)
            assert all(isinstance(state, DoorState) for state in before.values())
            await self.start_and_settle(sensors)
            assert set(sensors.read()) == set(self.compartment_ids)

        self.run_with_sensors(scenario)

    def test_read_returns_a_copy(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            await self.start_and_settle(sensors)
            sensors.read()["A01"] = DoorState.OPEN
            assert sensors.read()["A01"] is DoorState.CLOSED

        self.run_with_sensors(scenario)

    def test_change_reaches_subscriber_once_on_the_loop_thread(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            await self.start_and_settle(sensors)
            recorder = DoorRecorder()
            sensors.subscribe(recorder)

            self.open_door_physically("A02")
            await self.wait_for_changes(recorder, 1)
            assert recorder.changes == [("A02", DoorState.OPEN)]
            expected = dict.fromkeys(self.compartment_ids, DoorState.CLOSED)
            assert sensors.read() == expected | {"A02": DoorState.OPEN}

            self.close_door_physically("A02")
            await self.wait_for_changes(recorder, 2)
            assert recorder.changes == [("A02", DoorState.OPEN), ("A02", DoorState.CLOSED)]
            assert sensors.read()["A02"] is DoorState.CLOSED
            assert recorder.threads == {threading.get_ident()}

        self.run_with_sensors(scenario)

    def test_change_made_on_another_thread_arrives_on_the_loop_thread(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            await self.start_and_settle(sensors)
            recorder = DoorRecorder()
            sensors.subscribe(recorder)
            await asyncio.to_thread(self.open_door_physically, "A03")
            await self.wait_for_changes(recorder, 1)
            assert recorder.changes == [("A03", DoorState.OPEN)]
            assert recorder.threads == {threading.get_ident()}

        self.run_with_sensors(scenario)

    def test_no_notification_without_a_change(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            await self.start_and_settle(sensors)
            recorder = DoorRecorder()
            sensors.subscribe(recorder)
            self.close_door_physically("A01")
            await asyncio.sleep(self.settle_s)
            assert recorder.changes == []

            self.open_door_physically("A01")
            await self.wait_for_changes(recorder, 1)
            self.open_door_physically("A01")
            await asyncio.sleep(self.settle_s)
            assert recorder.changes == [("A01", DoorState.OPEN)]

        self.run_with_sensors(scenario)

    def test_every_listener_hears_each_change_once(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            await self.start_and_settle(sensors)
            first, second = DoorRecorder(), DoorRecorder()
            sensors.subscribe(first)
            sensors.subscribe(second)
            self.open_door_physically("A01")
            await self.wait_for_changes(second, 1)
            assert first.changes == second.changes == [("A01", DoorState.OPEN)]

        self.run_with_sensors(scenario)

    def test_failing_listener_does_not_silence_the_others(self) -> None:
        def broken(compartment_id: str, state: DoorState) -> None:
            raise RuntimeError("listener bug")

        async def scenario(sensors: DoorSensors) -> None:
            await self.start_and_settle(sensors)
            recorder = DoorRecorder()
            sensors.subscribe(broken)
            sensors.subscribe(recorder)
            self.open_door_physically("A02")
            await self.wait_for_changes(recorder, 1)
            self.close_door_physically("A02")
            await self.wait_for_changes(recorder, 2)
            assert recorder.changes == [("A02", DoorState.OPEN), ("A02", DoorState.CLOSED)]

        self.run_with_sensors(scenario)

    def test_no_notification_after_stop(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            await self.start_and_settle(sensors)
            recorder = DoorRecorder()
            sensors.subscribe(recorder)
            await sensors.stop()
            await sensors.stop()
            self.open_door_physically("A01")
            await asyncio.sleep(self.settle_s)
            assert recorder.changes == []

        self.run_with_sensors(scenario)

    def test_stop_before_start_is_harmless(self) -> None:
        async def scenario(sensors: DoorSensors) -> None:
            await sensors.stop()
            await sensors.stop()

        self.run_with_sensors(scenario)
