"""An in-memory parcel locker: locks, latches and doors, for the laptop demo and for tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from locker_agent.app.ports.hardware import (
    DoorListener,
    DoorSensors,
    HardwareError,
    LockDriver,
    check_unlock_request,
)
from locker_agent.domain.model import DoorState
from locker_agent.hardware.door_tracker import DoorStateTracker

logger = logging.getLogger(__name__)

_CROSS_THREAD_TIMEOUT_S = 10.0


class DoorLatched(HardwareError):
    """A door was pulled while its latch held it shut."""


class SimulatedLocker(LockDriver, DoorSensors):
    """Locks, latches and doors of a locker, modelled in memory.

    Each compartment has a solenoid lock, a latch and a door. The latch is released while the
    lock is energised and for ``latch_window_s`` after the pulse ends; closing the door catches
    the latch again. A door opens only while its latch is released, unless forced (tampering).

    ``auto_open_on_unlock`` makes a pulse spring the door open, as the spring-loaded doors of
    real lockers do. ``auto_close_after_s`` has a simulated person close a door that many
    seconds after it opened through a released latch (a forced door stays open). A jammed
    compartment's relay still clicks, but its latch never releases: a pulse with no opening.

    The door methods may be called from any thread; listeners always run on the event loop
    the locker was started on, and only while it is started.
    """

    def __init__(
        self,
        compartment_ids: Iterable[str],
        *,
        auto_open_on_unlock: bool = True,
        auto_close_after_s: float | None = 5.0,
        initial_door: DoorState = DoorState.CLOSED,
        latch_window_s: float = 3.0,
    ) -> None:
        ids = tuple(compartment_ids)
        if not ids:
            raise ValueError("a locker needs at least one compartment")
        if len(set(ids)) != len(ids):
            raise ValueError("compartment ids must be unique")
        if auto_close_after_s is not None and not auto_close_after_s > 0:
            raise ValueError(f"auto_close_after_s must be > 0 or None, got {auto_close_after_s!r}")
        if not latch_window_s >= 0:
            raise ValueError(f"latch_window_s must be >= 0, got {latch_window_s!r}")
        self.compartment_ids = ids
        self.auto_open_on_unlock = auto_open_on_unlock
        self.auto_close_after_s = auto_close_after_s
        self.latch_window_s = latch_window_s
        self.pulses: list[tuple[str, float]] = []
        """Every pulse given, in order: (compartment_id, pulse_s)."""
        self._doors = DoorStateTracker(ids, initial=initial_door)
        # compartment -> token of the pulse holding it energised, so that a pulse cut short by
        # stop() cannot de-energise a later pulse on the same compartment.
        self._energised: dict[str, object] = {}
        self._energy_lock = threading.Lock()
        self.pulse_log: deque[tuple[str, float, float]] = deque(maxlen=10_000)
        """(compartment, on, off) in monotonic seconds: when each simulated coil was
        energised and let go (benchmarks read the longest pulse from it)."""
        self._pulse_started: dict[str, float] = {}
        """Pulses end on timer threads as well as on the event loop."""
        self._released_until: dict[str, float] = {}
        self._jammed: set[str] = set()
        self._pulse_locks: dict[str, asyncio.Lock] = {}
        self._auto_close: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._energised.clear()
        self._released_until.clear()
        # Locks and tasks belong to one event loop; a fresh start gets fresh ones.
        self._pulse_locks = {cid: asyncio.Lock() for cid in self.compartment_ids}
        self._auto_close.clear()
        self._loop = loop

    async def stop(self) -> None:
        self._loop = None
        self._energised.clear()
        self._released_until.clear()
        tasks = [task for task in self._auto_close.values() if not task.get_loop().is_closed()]
        self._auto_close.clear()
        for task in tasks:
            task.cancel()
        current = asyncio.get_running_loop()
        await asyncio.gather(
            *(task for task in tasks if task.get_loop() is current), return_exceptions=True
        )

    # -- LockDriver -------------------------------------------------------------------------

    async def unlock(self, compartment_id: str, pulse_s: float) -> None:
        check_unlock_request(compartment_id, pulse_s, known=self._doors, started=self.started)
        lock = self._pulse_locks[compartment_id]
        async with lock:
            if self._pulse_locks.get(compartment_id) is not lock or not self.started:
                raise HardwareError(
                    "lock driver stopped before the pulse", compartment_id=compartment_id
                )
            token = object()
            self.pulses.append((compartment_id, pulse_s))
            logger.debug("simulated pulse on %s for %.3f s", compartment_id, pulse_s)
            self._energised[compartment_id] = token
            self._pulse_started[compartment_id] = time.monotonic()
            # like a relay driver's, the pulse ends on a thread the event loop cannot delay
            timer = threading.Timer(pulse_s, self._end_pulse, (compartment_id, token))
            timer.daemon = True
            timer.start()
            try:
                if self.auto_open_on_unlock:
                    self._spring_open(compartment_id)
                await asyncio.sleep(pulse_s)
            finally:
                timer.cancel()
                self._end_pulse(compartment_id, token)

    def _end_pulse(self, compartment_id: str, token: object) -> None:
        """End the pulse ``token`` if it is still on (from any thread): the latch lets go."""
        with self._energy_lock:
            if self._energised.get(compartment_id) is not token:
                return
            del self._energised[compartment_id]
            started = self._pulse_started.pop(compartment_id, None)
            if started is not None:
                self.pulse_log.append((compartment_id, started, time.monotonic()))
            if compartment_id not in self._jammed:
                self._released_until[compartment_id] = time.monotonic() + self.latch_window_s

    def energised(self) -> frozenset[str]:
        # dict.copy() is atomic, so this is safe to call from another thread.
        return frozenset(self._energised.copy())

    def force_off(self) -> None:
        with self._energy_lock:
            self._energised.clear()

    # -- DoorSensors ------------------------------------------------------------------------

    def read(self) -> dict[str, DoorState]:
        return self._doors.snapshot()

    def subscribe(self, listener: DoorListener) -> None:
        self._doors.subscribe(listener)

    # -- the simulated world ----------------------------------------------------------------

    def latched(self, compartment_id: str) -> bool:
        """Whether the compartment's latch would hold its door shut right now."""
        self._check_known(compartment_id)
        return not self._latch_released(compartment_id)

    def open_door(self, compartment_id: str, *, force: bool = False) -> None:
        """Pull the door open; raises DoorLatched if the latch holds it and not ``force``."""
        self._check_known(compartment_id)
        self._on_loop(lambda: self._open(compartment_id, force=force))

    def close_door(self, compartment_id: str) -> None:
        """Push the door shut; it latches again."""
        self._check_known(compartment_id)
        self._on_loop(lambda: self._close(compartment_id))

    def jam(self, compartment_id: str, jammed: bool = True) -> None:
        """Jam (or free) the latch: while jammed, pulses click the relay but release nothing."""
        self._check_known(compartment_id)
        if jammed:
            self._jammed.add(compartment_id)
            self._released_until.pop(compartment_id, None)
        else:
            self._jammed.discard(compartment_id)

    # -- internals --------------------------------------------------------------------------

    def _check_known(self, compartment_id: str) -> None:
        if compartment_id not in self._doors:
            raise HardwareError(
                f"unknown compartment {compartment_id!r}", compartment_id=compartment_id
            )

    def _latch_released(self, compartment_id: str) -> bool:
        if compartment_id in self._jammed:
            return False
        return compartment_id in self._energised or time.monotonic() < self._released_until.get(
            compartment_id, 0.0
        )

    def _spring_open(self, compartment_id: str) -> None:
        if self._latch_released(compartment_id):
            self._open(compartment_id, force=False)

    def _open(self, compartment_id: str, *, force: bool) -> None:
        if self._doors[compartment_id] == DoorState.OPEN:
            return
        through_latch = self._latch_released(compartment_id)
        if not through_latch and not force:
            raise DoorLatched(
                f"compartment {compartment_id} is latched shut", compartment_id=compartment_id
            )
        self._doors.update(compartment_id, DoorState.OPEN, notify=self.started)
        if through_latch:
            self._schedule_auto_close(compartment_id)

    def _close(self, compartment_id: str) -> None:
        pending = self._auto_close.pop(compartment_id, None)
        if pending is not None:  # _close_later removes itself before it calls us
            pending.cancel()
        self._released_until.pop(compartment_id, None)
        self._doors.update(compartment_id, DoorState.CLOSED, notify=self.started)

    def _schedule_auto_close(self, compartment_id: str) -> None:
        loop = self._loop
        if self.auto_close_after_s is None or loop is None or not self.started:
            return
        previous = self._auto_close.pop(compartment_id, None)
        if previous is not None:
            previous.cancel()
        self._auto_close[compartment_id] = loop.create_task(
            self._close_later(compartment_id, self.auto_close_after_s),
            name=f"simulated-close-{compartment_id}",
        )

    async def _close_later(self, compartment_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self._auto_close.get(compartment_id) is asyncio.current_task():
            del self._auto_close[compartment_id]
        self._close(compartment_id)

    def _on_loop(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the locker's event loop thread and wait for it.

        Door changes made from other threads (a GUI, a test driving the world) must reach
        listeners on the loop thread, as the DoorSensors contract promises.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running() or _running_loop() is loop:
            action()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                action()
            except Exception as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(run)
        try:
            done.result(timeout=_CROSS_THREAD_TIMEOUT_S)
        except TimeoutError:
            raise HardwareError("simulated locker's event loop did not respond") from None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
