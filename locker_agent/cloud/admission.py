"""Admission control for commands: a flood on the broker cannot starve the locker.

A token bucket lets ``rate_per_s`` commands through, with bursts of ``burst``; commands over
that wait in a bounded queue, served as tokens come back; beyond the queue they are dropped
unanswered (the cloud's retry finds the locker when the flood is over). Whatever floods in,
the locker spends at most ``rate_per_s`` commands' worth of work a second on them, so the
event loop keeps serving the keypad, the kiosk and the doors. The first drop of a flood
raises an alarm, once until the flood has been over for ``quiet_s``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class AdmissionStats:
    admitted: int = 0
    queued: int = 0
    dropped: int = 0
    floods: int = 0


@dataclass
class CommandAdmission(Generic[T]):
    """Decides, per incoming command, now, later (queued) or never (dropped)."""

    rate_per_s: float
    burst: int
    queue_size: int
    quiet_s: float = 60.0
    monotonic: Callable[[], float] = time.monotonic
    stats: AdmissionStats = field(default_factory=AdmissionStats)
    _tokens: float = field(init=False)
    _refilled_at: float = field(init=False)
    _queue: deque[T] = field(init=False, default_factory=deque)
    _last_drop: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1 or self.queue_size < 0:
            raise ValueError("rate_per_s > 0, burst >= 1 and queue_size >= 0, please")
        self._tokens = float(self.burst)
        self._refilled_at = self.monotonic()

    def offer(self, item: T) -> tuple[bool, bool]:
        """``(admitted now, a flood just began)``; not admitted means queued or dropped."""
        self._refill()
        if not self._queue and self._tokens >= 1:
            self._tokens -= 1
            self.stats.admitted += 1
            return True, False
        if len(self._queue) < self.queue_size:
            self._queue.append(item)
            self.stats.queued += 1
            return False, False
        self.stats.dropped += 1
        now = self.monotonic()
        began = self._last_drop is None or now - self._last_drop >= self.quiet_s
        self._last_drop = now
        if began:
            self.stats.floods += 1
        return False, began

    def take_ready(self) -> list[T]:
        """Queued commands whose turn has come, oldest first."""
        self._refill()
        ready: list[T] = []
        while self._queue and self._tokens >= 1:
            self._tokens -= 1
            self.stats.admitted += 1
            ready.append(self._queue.popleft())
        return ready

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def next_turn_s(self) -> float:
        """Seconds until the next queued command may go."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate_per_s)

    def _refill(self) -> None:
        now = self.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self.rate_per_s)
        self._refilled_at = now
