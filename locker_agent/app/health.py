"""Health checks: what the systemd watchdog and the API's ``/healthz`` both ask.

A check is any callable, plain or ``async``, returning ``(ok, reason)``. The standard ones for
the event loop and the hardware live here; the store offers its own
(:func:`locker_agent.store.health.database_writable`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

CheckResult = tuple[bool, str]
"""``(ok, reason)``: ``reason`` says what is wrong when ``ok`` is false (and may be "" if ok)."""


class HealthCheck(Protocol):
    """A check the watchdog runs on the event loop before each ping.

    Plain or ``async``; returns ``(ok, reason)``. It should take milliseconds: the watchdog
    gives it at most one ping interval and counts anything slower (or an exception) as a fail.
    Its name in logs is its ``name`` attribute, else its ``__name__``.
    """

    def __call__(self) -> CheckResult | Awaitable[CheckResult]: ...


@runtime_checkable
class SupportsHealth(Protocol):
    """What a hardware driver may offer so :func:`hardware_alive` can ask it how it is."""

    def healthy(self) -> bool: ...


def check_name(check: HealthCheck) -> str:
    name = getattr(check, "name", None) or getattr(check, "__name__", None)
    return str(name) if name else type(check).__name__


# --- standard checks --------------------------------------------------------------------------


def loop_responsive(max_lag_s: float, *, probe_s: float = 0.01) -> HealthCheck:
    """Fails when a short sleep on the event loop overshoots by more than ``max_lag_s``.

    A loop that is wedged for good cannot run any check (so no ping goes out anyway); this
    catches a loop that still turns but too slowly, e.g. flooded with callbacks.
    """

    async def loop_responsive() -> CheckResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(probe_s)
        lag = loop.time() - started - probe_s
        if lag > max_lag_s:
            return False, f"event loop lags {lag:.2f} s (limit {max_lag_s:g} s)"
        return True, f"event loop lag {lag * 1000:.0f} ms"

    return loop_responsive


class _HasDrivers(Protocol):
    @property
    def locks(self) -> object: ...

    @property
    def doors(self) -> object: ...


def hardware_alive(agent: _HasDrivers) -> HealthCheck:
    """Fails when the lock driver or the door sensors say they are not working.

    A driver that has ``healthy() -> bool`` is asked that; else one with a ``started``
    property must be started; a driver with neither counts as alive.
    """

    def hardware_alive() -> CheckResult:
        drivers: list[tuple[str, object]] = [("lock driver", agent.locks)]
        if agent.doors is not agent.locks:
            drivers.append(("door sensors", agent.doors))
        for role, driver in drivers:
            kind = type(driver).__name__
            if isinstance(driver, SupportsHealth):
                if not driver.healthy():
                    return False, f"{role} {kind} reports unhealthy"
            elif hasattr(driver, "started") and not driver.started:
                return False, f"{role} {kind} is not started"
        return True, "hardware alive"

    return hardware_alive


def locks_safe(locks: object) -> HealthCheck:
    """Fails once the safety wrapper had to force a lock off (``SafeLocks.fault``).

    What the systemd watchdog asks of the hardware: a breach of the safety rules inside this
    process. A lock board that stops answering is a peripheral's fault, raised as an alarm
    (``board_offline``) with its compartments out of service; restarting the agent would only
    interrupt the boards that still work, so it does not stop the pings.
    """

    def locks_safe() -> CheckResult:
        fault = getattr(locks, "fault", None)
        if fault:
            return False, str(fault)
        return True, "locks safe"

    return locks_safe


class LoopLag:
    """Measures how late the event loop runs a timer: its lag, now and at worst lately.

    Every ``interval_s`` it sleeps and compares when it woke with when it asked to. A loop
    kept busy (a flood, a slow disk in the loop, a bug) shows here before anything fails;
    ``/metrics`` and telemetry report it, and the watchdog's ``loop_responsive`` acts on it.
    """

    def __init__(self, interval_s: float = 0.5, *, window: int = 120) -> None:
        self.interval_s = interval_s
        self._recent: list[float] = []
        self._window = window
        self.current_s = 0.0

    @property
    def max_s(self) -> float:
        """The worst lag over the last ``window`` samples (a minute at the default)."""
        return max(self._recent, default=0.0)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.current_s = max(0.0, loop.time() - asked)
            self._recent.append(self.current_s)
            del self._recent[: -self._window]
