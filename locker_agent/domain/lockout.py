"""The brake on guessing codes at the locker.

Two limits work together (the arithmetic behind the defaults is in ``docs/security.md``):

* **Per input** (keypad, scanner, kiosk): the first ``free_failures`` wrong codes in a row cost
  nothing, so a customer who mistypes twice is never held up; after that each wrong code makes
  that input wait, twice as long each time, up to ``max_delay_s``. A right code on that input
  clears its count.
* **For the whole locker**: every wrong code, from any input, spends one token of a bucket
  that holds ``locker_burst`` and refills at ``locker_per_hour``. An empty bucket refuses all
  code entries until it refills. Right codes do not refill it, so an attacker gains nothing
  from customers who come and go; this is the limit that bounds how fast anyone can guess.

Entries refused by a lockout are not checked against any code and do not count as failures:
they reveal nothing, and a child pressing keys cannot stretch a lockout forever.

Time is the locker's service clock (seconds, :class:`~locker_agent.domain.clock.ServiceClock`):
it only moves forward, survives restarts, and cannot be pushed by setting the wall clock, so
neither pulling the power nor a wrong or spoofed date refills the bucket or ends a wait. The
state survives restarts (the service stores :meth:`CodeLockout.snapshot`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_EPSILON = 1e-9
"""Float rounding in the refill must not keep a token just out of reach."""


@dataclass(frozen=True)
class LockoutPolicy:
    free_failures: int = 3
    """Wrong codes in a row an input may make before it has to wait."""
    first_delay_s: float = 30.0
    """The wait after the first wrong code beyond the free ones; it doubles with each next."""
    max_delay_s: float = 900.0
    locker_burst: int = 30
    """Wrong codes the whole locker absorbs before the hourly rate applies."""
    locker_per_hour: float = 20.0
    """Sustained wrong codes per hour for the whole locker: the bound on any attacker."""
    input_quiet_s: float = 3600.0
    """An input with no wrong code for this long starts afresh, so the next customer at a
    keypad someone hammered yesterday is not held up (the locker-wide bucket still binds)."""

    def delay_after(self, consecutive_failures: int) -> float:
        """Seconds an input waits after ``consecutive_failures`` wrong codes in a row."""
        beyond = consecutive_failures - self.free_failures
        if beyond <= 0:
            return 0.0
        # 2**exponent is capped well before it could overflow a float
        return min(self.first_delay_s * 2.0 ** min(beyond - 1, 64), self.max_delay_s)

    def guesses_per_year(self) -> float:
        """Most codes anyone can have checked in a year, whatever inputs they use."""
        return self.locker_burst + self.locker_per_hour * 24 * 365


CUSTOMER_LOCKOUT = LockoutPolicy()
"""The customers' lockout by default; the config's ``[policies] lockout_*`` keys default to it."""
COURIER_LOCKOUT = LockoutPolicy(locker_burst=10, locker_per_hour=6)
"""Couriers are few and their codes long-lived: a stricter locker-wide limit of their own."""


@dataclass
class _InputState:
    consecutive_failures: int = 0
    blocked_until: float | None = None
    last_failure: float | None = None


@dataclass
class CodeLockout:
    """Counts wrong codes for one namespace of codes (customers' or couriers')."""

    policy: LockoutPolicy
    tokens: float = field(default=-1.0)
    refilled_at: float | None = None
    _inputs: dict[str, _InputState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.policy.locker_burst)

    # ------------------------------------------------------------------ queries

    def wait_for(self, source: str, now: float) -> float:
        """Seconds until ``source`` may try a code; 0 when it may try now."""
        self._refill(now)
        waits = [0.0]
        state = self._input(source, now)
        if state is not None and state.blocked_until is not None:
            waits.append(state.blocked_until - now)
        if self.tokens < 1.0 - _EPSILON:
            waits.append((1.0 - self.tokens) * 3600.0 / self.policy.locker_per_hour)
        wait = max(waits)
        # whole milliseconds, never a sliver: a wait shorter than the clock's resolution
        # would leave the bucket a rounding error short of a token for ever
        return math.ceil(wait * 1000) / 1000 if wait > 0 else 0.0

    def locker_locked(self, now: float) -> bool:
        """Has the whole locker run out of tries (rather than one input)?"""
        self._refill(now)
        return self.tokens < 1.0 - _EPSILON

    # ---------------------------------------------------------------- outcomes

    def failed(self, source: str, now: float) -> float:
        """Count a wrong code from ``source``; return the wait it imposes on its next try."""
        self._refill(now)
        self.tokens = max(self.tokens - 1.0, 0.0)
        state = self._input(source, now) or self._inputs.setdefault(source, _InputState())
        state.consecutive_failures += 1
        state.last_failure = now
        delay = self.policy.delay_after(state.consecutive_failures)
        state.blocked_until = now + delay if delay else None
        return self.wait_for(source, now)

    def succeeded(self, source: str) -> bool:
        """A right code on ``source`` clears its count; returns whether there was one."""
        return self._inputs.pop(source, None) is not None

    def consecutive_failures(self, source: str) -> int:
        state = self._inputs.get(source)
        return state.consecutive_failures if state else 0

    # ------------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        """Plain data to store, so a restart resumes where the locker was."""
        return {
            "tokens": self.tokens,
            "refilled_at": self.refilled_at,
            "inputs": {
                source: {
                    "consecutive_failures": s.consecutive_failures,
                    "blocked_until": s.blocked_until,
                    "last_failure": s.last_failure,
                }
                for source, s in self._inputs.items()
            },
        }

    @classmethod
    def restore(cls, policy: LockoutPolicy, snapshot: dict[str, Any] | None) -> CodeLockout:
        """The lockout from :meth:`snapshot`; anything unreadable starts from an empty bucket.

        Starting empty (rather than full) means damaged state never hands an attacker a
        fresh burst of tries.
        """
        lockout = cls(policy)
        if not snapshot:
            return lockout
        try:
            tokens = _seconds(snapshot["tokens"])
            assert tokens is not None
            lockout.tokens = min(max(tokens, 0.0), float(policy.locker_burst))
            lockout.refilled_at = _seconds(snapshot.get("refilled_at"))
            for source, s in dict(snapshot.get("inputs") or {}).items():
                lockout._inputs[str(source)] = _InputState(
                    consecutive_failures=int(s["consecutive_failures"]),
                    blocked_until=_seconds(s.get("blocked_until")),
                    last_failure=_seconds(s.get("last_failure")),
                )
        except (KeyError, TypeError, ValueError, AttributeError, AssertionError):
            lockout = cls(policy, tokens=0.0)
        return lockout

    # -------------------------------------------------------------- internals

    def _input(self, source: str, now: float) -> _InputState | None:
        """The input's state, forgotten once it has been quiet for ``input_quiet_s``."""
        state = self._inputs.get(source)
        if state is not None and state.last_failure is not None and (
            now - state.last_failure >= self.policy.input_quiet_s
            and (state.blocked_until is None or now >= state.blocked_until)
        ):
            del self._inputs[source]
            return None
        return state

    def _refill(self, now: float) -> None:
        if self.refilled_at is not None:
            # the service clock does not run backwards; if a restored reading lags the saved
            # state (a power cut between clock saves), nothing refills until it catches up
            elapsed = max(now - self.refilled_at, 0.0)
            self.tokens = min(
                self.tokens + elapsed * self.policy.locker_per_hour / 3600.0,
                float(self.policy.locker_burst),
            )
        if self.refilled_at is None or now > self.refilled_at:
            self.refilled_at = now


def _seconds(value: object) -> float | None:
    """A stored reading of the service clock; anything but a finite number is damage."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return float(value)
