"""The lock safety rules, enforced in one place around whatever driver the config chose.

The composition root wraps every backend in :class:`SafeLocks`; the service pulses locks only
through it. The rules it enforces (docs/hardware.md lists where every other rule lives):

* **Pulse cap**: a pulse longer than ``MAX_PULSE_S`` (or not > 0) is refused before any
  hardware is touched.
* **Power budget**: at most ``max_simultaneous`` locks energised at once; further unlocks
  queue, first come first served.
* **Gap**: a pulse starts no sooner than ``gap_s`` after the previous one ended (and, when
  several may run at once, after the previous one started, so inrush currents never add up).
* **All off at start and stop**: after the driver's ``start()`` and ``stop()`` nothing may be
  energised; a driver that says otherwise is stopped and start-up fails.
* **De-energise on cancel**: however an unlock ends (done, failed, cancelled), its lock must
  be off afterwards; if the driver left it on, every output is switched off at once through
  ``stop()`` and the wrapper reports itself unhealthy so the watchdog restarts the daemon.
* **The cap, whatever the event loop does**: each driver ends its own pulses on a timer the
  loop cannot delay; as the last resort, a thread of this wrapper (:class:`PulseCapWatch`)
  switches every output off (``force_off()``) the moment any lock has been energised for
  longer than ``MAX_PULSE_S``, and the wrapper reports itself unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from locker_agent.app.ports.hardware import MAX_PULSE_S, HardwareError, LockDriver, validate_pulse

logger = logging.getLogger(__name__)


class UnlockWithdrawn(HardwareError):
    """A queued unlock was no longer wanted when its turn came; nothing was energised."""


CAP_WATCH_INTERVAL_S = 0.05
"""How often the last-resort thread looks at the outputs: the cap holds to within this."""
CAP_GRACE_S = 0.1
"""A pulse of exactly the cap ends on its driver's timer a little after it; no trip for that."""


class PulseCapWatch:
    """A thread that forces every output off once any lock is energised beyond the cap.

    It shares nothing with the event loop but the driver's ``energised()`` and ``force_off()``,
    both safe to call from any thread, so a loop stalled by a flood, a slow disk or a bug
    cannot hold a lock on. ``on_trip`` is told (from this thread) what was switched off.
    """

    def __init__(
        self,
        driver: LockDriver,
        *,
        cap_s: float = MAX_PULSE_S,
        interval_s: float = CAP_WATCH_INTERVAL_S,
        on_trip: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._driver = driver
        self._cap_s = cap_s
        self._interval_s = interval_s
        self._on_trip = on_trip
        self._monotonic = monotonic
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="pulse-cap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _run(self) -> None:
        since: dict[str, float] = {}
        while not self._stopping.wait(self._interval_s):
            try:
                energised = self._driver.energised()
            except Exception:
                logger.exception("the pulse cap watch could not read the outputs")
                continue
            now = self._monotonic()
            since = {c: since.get(c, now) for c in energised}
            limit = self._cap_s + CAP_GRACE_S
            over = sorted(c for c, start in since.items() if now - start > limit)
            if over:
                self._driver.force_off()
                since.clear()
                self._on_trip(
                    f"the lock of {', '.join(over)} stayed energised beyond "
                    f"{self._cap_s:g} s; every output was forced off"
                )


class SafeLocks(LockDriver):
    """A LockDriver that holds any other to the safety rules above.

    ``set_budget`` changes the power budget and the gap at run time (SIGHUP reload); unlocks
    already queued are served under the new budget.
    """

    def __init__(
        self,
        driver: LockDriver,
        *,
        max_simultaneous: int = 1,
        gap_s: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(driver, SafeLocks):
            raise ValueError("the driver is already wrapped")
        self.driver = driver
        self._monotonic = monotonic
        self._max_simultaneous = 1
        self._gap_s = 0.0
        self._active = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self.set_budget(max_simultaneous=max_simultaneous, gap_s=gap_s)
        self._last_start = float("-inf")
        self._last_end = float("-inf")
        self._starting = asyncio.Lock()
        self._bound_to: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tripped: str | None = None
        self._cap_watch = PulseCapWatch(driver, on_trip=self._cap_tripped)
        """Real seconds, always: the cap is a physical limit of the lock coils."""

    # -- budget -----------------------------------------------------------------------------

    @property
    def max_simultaneous(self) -> int:
        return self._max_simultaneous

    @property
    def gap_s(self) -> float:
        return self._gap_s

    def set_budget(self, *, max_simultaneous: int, gap_s: float) -> None:
        """At most ``max_simultaneous`` locks at once, ``gap_s`` seconds between pulses."""
        if max_simultaneous < 1:
            raise ValueError(f"max_simultaneous must be >= 1, got {max_simultaneous!r}")
        if not 0 <= gap_s <= 60:
            raise ValueError(f"gap_s must be in 0..60, got {gap_s!r}")
        self._max_simultaneous = max_simultaneous
        self._gap_s = gap_s
        self._admit()  # a bigger budget may let queued unlocks go now

    async def _take_slot(self) -> None:
        """Wait for room in the power budget, first come first served."""
        if not self._queue and self._active < self._max_simultaneous:
            self._active += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_slot_back()  # admitted, then cancelled before it could run
            elif turn in self._queue:
                self._queue.remove(turn)
            raise

    def _give_slot_back(self) -> None:
        self._active -= 1
        self._admit()

    def _admit(self) -> None:
        queue = self._queue
        while queue and self._active < self._max_simultaneous:
            turn = queue.popleft()
            if not turn.done():
                self._active += 1
                turn.set_result(None)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._loop is not None and bool(getattr(self.driver, "started", True))

    def healthy(self) -> bool:
        """False once a lock was found energised when it must not be, or the driver is sick."""
        if self._tripped is not None or not self.started:
            return False
        check = getattr(self.driver, "healthy", None)
        return bool(check()) if callable(check) else True

    @property
    def fault(self) -> str | None:
        """Why the wrapper switched everything off, if it had to."""
        return self._tripped

    async def start(self) -> None:
        await self.driver.start()
        left_on = self.driver.energised()
        if left_on:
            await self.driver.stop()
            raise HardwareError(
                f"locks energised right after start: {', '.join(sorted(left_on))}; "
                "the driver was stopped"
            )
        self._loop = self._bind()
        self._tripped = None
        self._cap_watch.start()

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Fresh queue and locks on a new event loop (asyncio primitives belong to one)."""
        loop = asyncio.get_running_loop()
        if self._bound_to is not loop:
            self._starting = asyncio.Lock()
            self._queue = deque()
            self._active = 0
            self._bound_to = loop
        return loop

    async def stop(self) -> None:
        self._loop = None
        self._cap_watch.stop()
        await self.driver.stop()
        left_on = self.driver.energised()
        if left_on:
            logger.critical(
                "locks still energised after stop: %s", ", ".join(sorted(left_on))
            )

    def cannot_pulse(self, compartment_id: str) -> str | None:
        return self.driver.cannot_pulse(compartment_id)

    def energised(self) -> frozenset[str]:
        return self.driver.energised()

    def force_off(self) -> None:
        self.driver.force_off()

    def _cap_tripped(self, what: str) -> None:
        """From the cap watch's thread: remember why, so health turns bad; say it loudly."""
        self._tripped = what
        logger.critical("%s", what)

    # -- unlocking --------------------------------------------------------------------------

    async def unlock(
        self,
        compartment_id: str,
        pulse_s: float,
        *,
        still_wanted: Callable[[], bool] | None = None,
        on_pulse: Callable[[], None] | None = None,
    ) -> None:
        """Pulse under the safety rules; ``still_wanted`` is asked when the unlock's turn comes.

        Raises UnlockWithdrawn (nothing energised) if ``still_wanted()`` is false by then.
        ``on_pulse()`` is called just before the driver energises the lock, so what it records
        comes before anything the opening door causes; if it fails, the pulse goes ahead.
        """
        validate_pulse(pulse_s)
        self._bind()  # also when wrapped around a driver someone else started
        await self._take_slot()
        try:
            async with self._starting:
                # the gap is kept under a lock so two queued unlocks never start together
                previous = max(self._last_end, self._last_start)
                wait = previous + self._gap_s - self._monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if still_wanted is not None and not still_wanted():
                    raise UnlockWithdrawn(
                        "unlock withdrawn before its pulse", compartment_id=compartment_id
                    )
                self._last_start = self._monotonic()
            refusal = self.driver.cannot_pulse(compartment_id)
            if refusal is not None:
                raise HardwareError(refusal, compartment_id=compartment_id)
            if on_pulse is not None:
                try:
                    on_pulse()
                except Exception:
                    logger.exception("could not record the start of a pulse; pulsing anyway")
            try:
                await self.driver.unlock(compartment_id, pulse_s)
            finally:
                self._last_end = self._monotonic()
                if compartment_id in self.driver.energised():
                    await self._trip(compartment_id)
        finally:
            self._give_slot_back()

    async def _trip(self, compartment_id: str) -> None:
        """The driver broke its promise to de-energise: everything off, now."""
        self._tripped = f"the lock of {compartment_id} stayed energised after its pulse"
        logger.critical("%s; switching every lock off", self._tripped)
        try:
            await asyncio.shield(self.driver.stop())
        except Exception:
            logger.exception("could not stop the lock driver")
