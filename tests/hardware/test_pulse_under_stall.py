"""A stalled event loop cannot hold a lock energised (issue 15).

The loop is blocked for 5 s in the middle of a pulse, as a flood of commands, a slow SD card
or a bug would block it. A thread watches the output itself (the GPIO pin, the simulated
latch) and records when it went off: every backend that times its own pulse must end it
within the pulse + 50 ms. A driver that fails to end its pulse is switched off by the safety
wrapper's own thread at the cap, with the loop still blocked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

from locker_agent.app.ports.hardware import MAX_PULSE_S, LockDriver
from locker_agent.app.safety import CAP_GRACE_S, CAP_WATCH_INTERVAL_S, SafeLocks
from locker_agent.hardware.gpio import GpioLocker
from locker_agent.hardware.simulated import SimulatedLocker

PULSE_S = 0.3
STALL_S = 5.0
MARGIN_S = 0.05

pytestmark = pytest.mark.slow


class OutputWatch:
    """Samples ``is_on`` every millisecond on its own thread: when it went on, and off."""

    def __init__(self, is_on: Callable[[], bool]) -> None:
        self._is_on = is_on
        self.went_on: float | None = None
        self.went_off: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OutputWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            on = self._is_on()
            now = time.monotonic()
            if on and self.went_on is None:
                self.went_on = now
            elif not on and self.went_on is not None and self.went_off is None:
                self.went_off = now

    @property
    def on_for(self) -> float:
        assert self.went_on is not None, "the output never went on"
        assert self.went_off is not None, "the output never went off"
        return self.went_off - self.went_on


async def pulse_through_a_stall(driver: LockDriver, watch: OutputWatch) -> None:
    """Start a pulse, and once the output is on, block the loop for STALL_S."""
    await driver.start()
    try:
        pulse = asyncio.create_task(driver.unlock("A01", PULSE_S))
        while watch.went_on is None:
            await asyncio.sleep(0.001)
        time.sleep(STALL_S)  # the whole event loop stops here, mid-pulse
        await pulse
    finally:
        await driver.stop()


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory()
    try:
        yield made
    finally:
        made.reset()


def test_a_gpio_relay_goes_off_on_time_while_the_loop_is_stalled(factory: MockFactory) -> None:
    locker = GpioLocker({"A01": 17}, {"A01": 5}, pin_factory=factory, door_debounce_ms=0)
    relay_pin = factory.pin(17)
    with OutputWatch(lambda: bool(relay_pin.state)) as watch:
        asyncio.run(pulse_through_a_stall(locker, watch))
    assert watch.on_for <= PULSE_S + MARGIN_S, watch.on_for


def test_a_simulated_latch_lets_go_on_time_while_the_loop_is_stalled() -> None:
    locker = SimulatedLocker(["A01"], auto_open_on_unlock=False)
    with OutputWatch(lambda: "A01" in locker.energised()) as watch:
        asyncio.run(pulse_through_a_stall(locker, watch))
    assert watch.on_for <= PULSE_S + MARGIN_S, watch.on_for


class ForgetfulLocker(SimulatedLocker):
    """A driver with a bug: it never ends a pulse by itself (its timer never fires)."""

    def _end_pulse(self, compartment_id: str, token: object) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._end_pulse(compartment_id, token)  # only the loop's own, late, ending


def test_the_safety_wrapper_forces_everything_off_at_the_cap_with_the_loop_stalled() -> None:
    driver = ForgetfulLocker(["A01"], auto_open_on_unlock=False)
    locks = SafeLocks(driver, max_simultaneous=1, gap_s=0)

    async def scenario(watch: OutputWatch) -> None:
        await locks.start()
        try:
            pulse = asyncio.create_task(locks.unlock("A01", 2.0))
            while watch.went_on is None:
                await asyncio.sleep(0.001)
            time.sleep(STALL_S)  # the loop cannot end the pulse; only the cap watch can
            assert not locks.healthy()
            await asyncio.gather(pulse, return_exceptions=True)
        finally:
            await locks.stop()

    with OutputWatch(lambda: "A01" in driver.energised()) as watch:
        asyncio.run(scenario(watch))
    assert watch.on_for <= MAX_PULSE_S + CAP_GRACE_S + CAP_WATCH_INTERVAL_S + MARGIN_S, watch.on_for
    assert locks.fault is not None and "forced off" in locks.fault
