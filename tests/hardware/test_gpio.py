"""The GPIO locker passes the hardware contracts on gpiozero's MockFactory, like on a Pi."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

from locker_agent.app.ports.hardware import DoorSensors, LockDriver
from locker_agent.domain.model import DoorState
from locker_agent.hardware.gpio import GpioLocker

from .contract import (
    COMPARTMENTS,
    DoorRecorder,
    DoorSensorsContract,
    LockDriverContract,
    eventually,
    run,
)
from .physics import ReedSwitchPin

LOCK_PINS = dict(zip(COMPARTMENTS, (17, 27, 22), strict=True))
SENSOR_PINS = dict(zip(COMPARTMENTS, (5, 6, 13), strict=True))


def reed(factory: MockFactory, pin: int) -> ReedSwitchPin:
    found = factory.pin(pin)
    assert isinstance(found, ReedSwitchPin)
    return found


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=ReedSwitchPin)
    try:
        yield made
    finally:
        made.reset()


def make_locker(factory: MockFactory, **options: Any) -> GpioLocker:
    options = {"door_debounce_ms": 5, "door_poll_interval_s": 0.05} | options
    return GpioLocker(LOCK_PINS, SENSOR_PINS, pin_factory=factory, **options)


class TestGpioLockDriver(LockDriverContract):
    @pytest.fixture(autouse=True)
    def _factory(self, factory: MockFactory) -> None:
        self.factory = factory

    def make_lock_driver(self) -> LockDriver:
        return make_locker(self.factory)


class TestGpioDoorSensors(DoorSensorsContract):
    @pytest.fixture(autouse=True)
    def _factory(self, factory: MockFactory) -> None:
        self.factory = factory

    def make_door_sensors(self) -> DoorSensors:
        for pin in SENSOR_PINS.values():
            reed(self.factory, pin).shut = True
        return make_locker(self.factory)

    def move(self, compartment_id: str, *, shut: bool) -> None:
        pin = reed(self.factory, SENSOR_PINS[compartment_id])
        pin.shut = shut
        pin.apply()

    def open_door_physically(self, compartment_id: str) -> None:
        self.move(compartment_id, shut=False)

    def close_door_physically(self, compartment_id: str) -> None:
        self.move(compartment_id, shut=True)


class TestGpioDoorSensorsClosedHigh(TestGpioDoorSensors):
    """Reed switches to 3V3 with pull-downs: a shut door reads high."""

    def make_door_sensors(self) -> DoorSensors:
        for pin in SENSOR_PINS.values():
            reed(self.factory, pin).shut = True
        return make_locker(self.factory, door_closed_when="high")


def run_locker(locker: GpioLocker, scenario: Any) -> None:
    async def main() -> None:
        try:
            await scenario()
        finally:
            await locker.stop()

    run(main())


def test_active_low_relays_stay_high_unless_pulsed(factory: MockFactory) -> None:
    locker = make_locker(factory, relay_active_high=False)

    async def scenario() -> None:
        await locker.start()
        assert locker.healthy()
        assert all(factory.pin(pin).state for pin in LOCK_PINS.values())
        pulse = asyncio.create_task(locker.unlock("A02", 0.2))
        await eventually(lambda: locker.energised() == {"A02"}, what="A02 energised")
        assert not factory.pin(LOCK_PINS["A02"]).state
        assert factory.pin(LOCK_PINS["A01"]).state
        await pulse
        assert factory.pin(LOCK_PINS["A02"]).state
        await locker.stop()
        assert not locker.healthy()
        assert all(factory.pin(pin).state for pin in LOCK_PINS.values())

    run_locker(locker, scenario)


def test_active_high_relay_pin_is_low_after_a_cancelled_pulse(factory: MockFactory) -> None:
    locker = make_locker(factory)

    async def scenario() -> None:
        await locker.start()
        pin = factory.pin(LOCK_PINS["A01"])
        assert not pin.state
        pulse = asyncio.create_task(locker.unlock("A01", 1.0))
        await eventually(lambda: bool(pin.state), what="relay pin high")
        pulse.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pulse
        assert not pin.state
        assert locker.energised() == frozenset()

    run_locker(locker, scenario)


def test_relay_pin_is_low_after_stop_mid_pulse(factory: MockFactory) -> None:
    locker = make_locker(factory)

    async def scenario() -> None:
        await locker.start()
        pin = factory.pin(LOCK_PINS["A03"])
        pulse = asyncio.create_task(locker.unlock("A03", 1.0))
        await eventually(lambda: bool(pin.state), what="relay pin high")
        await locker.stop()
        assert not pin.state
        pulse.cancel()
        await asyncio.gather(pulse, return_exceptions=True)
        assert not pin.state

    run_locker(locker, scenario)


def test_poll_reconciles_a_missed_edge(factory: MockFactory) -> None:
    locker = make_locker(factory, door_poll_interval_s=0.05)

    async def scenario() -> None:
        await locker.start()
        recorder = DoorRecorder()
        locker.subscribe(recorder)
        pin = reed(factory, SENSOR_PINS["A02"])
        pin.shut = False
        pin.apply_silently()
        await asyncio.sleep(0.01)
        assert recorder.changes == []  # no callback came
        await eventually(lambda: recorder.changes != [], timeout_s=0.5, what="poll")
        assert recorder.changes == [("A02", DoorState.OPEN)]
        assert locker.read()["A02"] is DoorState.OPEN

    run_locker(locker, scenario)


def test_bounce_within_debounce_is_one_change(factory: MockFactory) -> None:
    locker = make_locker(factory, door_debounce_ms=100, door_poll_interval_s=10.0)

    async def scenario() -> None:
        await locker.start()
        recorder = DoorRecorder()
        locker.subscribe(recorder)
        pin = reed(factory, SENSOR_PINS["A01"])
        for shut in (False, True, False, True, False):  # contacts chatter as the door opens
            pin.shut = shut
            pin.apply()
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.3)
        assert recorder.changes == [("A01", DoorState.OPEN)]

        for shut in (True, False):  # a knock: a blip that comes back
            pin.shut = shut
            pin.apply()
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.3)
        assert recorder.changes == [("A01", DoorState.OPEN)]

    run_locker(locker, scenario)


def test_initial_states_are_read_at_start(factory: MockFactory) -> None:
    reed(factory, SENSOR_PINS["A03"]).shut = False
    locker = make_locker(factory)
    assert locker.read() == dict.fromkeys(COMPARTMENTS, DoorState.UNKNOWN)

    async def scenario() -> None:
        recorder = DoorRecorder()
        locker.subscribe(recorder)
        await locker.start()
        assert locker.read() == {
            "A01": DoorState.CLOSED,
            "A02": DoorState.CLOSED,
            "A03": DoorState.OPEN,
        }
        assert recorder.changes == []  # learning the first state is not a change

    run_locker(locker, scenario)


def test_pins_in_use_are_a_hardware_error(factory: MockFactory) -> None:
    from locker_agent.app.ports.hardware import HardwareError

    first = make_locker(factory)
    second = make_locker(factory)

    async def scenario() -> None:
        await first.start()
        with pytest.raises(HardwareError):
            await second.start()
        assert not second.healthy()
        await second.stop()
        assert first.healthy()

    run_locker(first, scenario)


@pytest.mark.parametrize(
    "options",
    [
        {"door_closed_when": "middle"},
        {"door_debounce_ms": -1},
        {"door_poll_interval_s": 0},
    ],
)
def test_bad_options_are_refused(factory: MockFactory, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_locker(factory, **options)


def test_a_pin_used_twice_is_refused(factory: MockFactory) -> None:
    closed_when: Literal["low"] = "low"
    with pytest.raises(ValueError, match="pin"):
        GpioLocker({"A01": 17}, {"A01": 17}, door_closed_when=closed_when, pin_factory=factory)
