"""The seam between the agent and the locker's hardware.

Every driver is built with the compartment-to-channel mapping from the config and speaks only
in compartment ids ("A01"); relay channels, GPIO pins and board addresses stay inside it.
Drivers for real hardware and the simulated one must pass the same contract tests
(``tests/hardware/contract.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass

from locker_agent.domain.model import DoorState

MAX_PULSE_S = 2.0
"""Longest a lock may stay energised in one pulse; solenoids overheat when held."""

DoorListener = Callable[[str, DoorState], None]


class HardwareError(Exception):
    """A driver could not do what was asked (board silent, port gone, unknown compartment...)."""

    def __init__(self, message: str, *, compartment_id: str | None = None) -> None:
        super().__init__(message)
        self.compartment_id = compartment_id


def validate_pulse(pulse_s: float) -> float:
    """Return ``pulse_s`` if it is a safe pulse length, else raise ValueError."""
    # Written so that NaN fails too: every comparison with NaN is false.
    if not 0.0 < pulse_s <= MAX_PULSE_S:
        raise ValueError(f"pulse must be > 0 and <= {MAX_PULSE_S} s, got {pulse_s!r}")
    return pulse_s


def check_unlock_request(
    compartment_id: str, pulse_s: float, *, known: Container[str], started: bool
) -> None:
    """The checks every driver makes before a pulse: a safe length, a known lock, a live driver."""
    validate_pulse(pulse_s)
    if compartment_id not in known:
        raise HardwareError(
            f"unknown compartment {compartment_id!r}", compartment_id=compartment_id
        )
    if not started:
        raise HardwareError("lock driver is not started", compartment_id=compartment_id)


class LockDriver(ABC):
    """Releases compartment locks by energising them for a short pulse."""

    @abstractmethod
    async def start(self) -> None:
        """Take the outputs and bring them to their safe state: every lock de-energised."""

    @abstractmethod
    async def unlock(self, compartment_id: str, pulse_s: float) -> None:
        """Energise the compartment's lock for ``pulse_s`` seconds, then de-energise it.

        The pulse ends on a timer the event loop cannot delay (a thread, or the board's own
        timer): a stalled loop never holds a lock energised past ``pulse_s``. Returns once the
        lock is de-energised. Raises ValueError unless
        0 < pulse_s <= MAX_PULSE_S, and HardwareError for an unknown compartment, a driver that
        is not started, or hardware that failed. Concurrent pulses on one compartment run one
        after the other, never overlapping. If cancelled mid-pulse, the lock is de-energised
        before the cancellation propagates.
        """

    @abstractmethod
    def energised(self) -> frozenset[str]:
        """Compartments whose lock is energised right now (callable from any thread)."""

    def cannot_pulse(self, compartment_id: str) -> str | None:
        """Why an unlock of this lock would fail at once, with nothing sent (its board is
        known to be silent, say), or None. Asked just before a pulse is recorded, so that
        ``unlock_pulsed`` is never written for a pulse that cannot start."""
        return None

    @abstractmethod
    def force_off(self) -> None:
        """Switch every lock off at once, from any thread, even with the event loop stalled.

        The last resort of the safety rules when a pulse outlives the cap; never raises.
        """

    @abstractmethod
    async def stop(self) -> None:
        """De-energise every lock and release the outputs; idempotent, safe before start()."""


class DoorSensors(ABC):
    """Reports whether each compartment's door is open or closed."""

    @abstractmethod
    async def start(self) -> None:
        """Begin watching the doors."""

    @abstractmethod
    def read(self) -> dict[str, DoorState]:
        """Last known state of every compartment's door; UNKNOWN until known."""

    @abstractmethod
    def subscribe(self, listener: DoorListener) -> None:
        """Call ``listener(compartment_id, new_state)`` on every real change of a door.

        Listeners run on the event loop thread (adapters whose hardware calls back from other
        threads hop with ``loop.call_soon_threadsafe``), once per change, never for a repeat
        of the same state, and not after stop(). A listener that raises is logged and does
        not keep the others from being called.
        """

    @abstractmethod
    async def stop(self) -> None:
        """Stop watching the doors; idempotent, safe before start()."""


@dataclass(frozen=True)
class CodeEntry:
    """A code someone typed or scanned, and where it came from ("keypad", "scanner"...)."""

    source: str
    text: str

    def __repr__(self) -> str:
        # Codes open doors: never let one reach a log through repr() or str().
        return f"CodeEntry(source={self.source!r}, length={len(self.text)})"


CodeSubmitter = Callable[[CodeEntry], Awaitable[None]]


class CodeInput(ABC):
    """A device people enter codes on: keypad, barcode scanner, console, kiosk."""

    @abstractmethod
    async def start(self, submit: CodeSubmitter) -> None:
        """Begin delivering entries; ``submit`` is awaited for each one, on the event loop."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering entries; idempotent, safe before start()."""
