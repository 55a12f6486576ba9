"""Running unlocks: the power budget, the pulse, jams, and doors left open.

Doors are opened intent-first: the ``unlock_requested`` event is committed before the relay
moves, and ``unlock_pulsed`` as the relay goes on (always before ``door_opened``). A door that
has not opened ``door_open_timeout_s`` after its pulse is pulsed once more, then given up on
(``unlock_abandoned``) so the customer's code works again, and the compartment goes out of
service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime

from locker_agent.app.ports.hardware import DoorSensors, HardwareError, LockDriver
from locker_agent.app.ports.storage import StoredEvent
from locker_agent.app.safety import SafeLocks, UnlockWithdrawn
from locker_agent.app.state import LockerState
from locker_agent.domain.errors import DomainError
from locker_agent.domain.model import DomainEvent, DoorState, UnlockIntent

logger = logging.getLogger(__name__)

JAM_ATTEMPTS = 2
"""Pulses given to a door that does not open before the compartment is taken out of service."""


@dataclass(frozen=True)
class UnlockPolicy:
    pulse_s: float = 0.5
    max_simultaneous: int = 1
    gap_s: float = 0.2
    door_open_timeout_s: float = 10.0
    door_left_open_alarm_s: float = 120.0


DEFAULT_UNLOCK_POLICY = UnlockPolicy()


class UnlockRunner:
    """Pulses the lock for every committed ``unlock_requested`` and follows its door."""

    def __init__(
        self,
        state: LockerState,
        locks: LockDriver,
        doors: DoorSensors,
        policy: UnlockPolicy,
    ) -> None:
        self._state = state
        self._locks = locks
        self._doors = doors
        self.policy = policy
        self._power: SafeLocks | None = None
        """The locks under the safety rules (power budget, gap); set by start()."""
        self._watches: set[asyncio.Task[None]] = set()
        self._unlock_tasks: set[asyncio.Task[None]] = set()
        self._open_since: dict[str, float] = {}
        self._left_open_alarms: dict[str, int] = {}
        self._pulses_to_record: dict[str, tuple[UnlockIntent, datetime]] = {}
        """Pulses begun whose ``unlock_pulsed`` is not committed yet (see _pulse_starting)."""
        state.subscribe(self._events_committed)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Put the locks under the safety rules and reconcile with the door sensors."""
        self._power = self._locks if isinstance(self._locks, SafeLocks) else SafeLocks(self._locks)
        self._power.set_budget(
            max_simultaneous=self.policy.max_simultaneous, gap_s=self.policy.gap_s
        )
        self._doors.subscribe(self._door_changed)
        self._reconcile_doors()

    async def stop(self) -> None:
        """Stop following doors; let any pulse in progress finish."""
        for task in list(self._watches):
            task.cancel()
        for task in list(self._watches):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unlock_tasks:
            # a pulse in progress finishes; nothing waits for doors any longer
            await asyncio.gather(*self._unlock_tasks, return_exceptions=True)

    def set_policy(self, policy: UnlockPolicy) -> None:
        """New pulse length, power budget and timeouts; pulses in progress finish as they were."""
        if self._power is not None:
            self._power.set_budget(max_simultaneous=policy.max_simultaneous, gap_s=policy.gap_s)
        self.policy = policy

    # -------------------------------------------------------------------- doors

    def _door_changed(self, compartment_id: str, state: DoorState) -> None:
        self._record_pulse(compartment_id)  # a pulse that opened this door is recorded first
        if state is DoorState.OPEN:
            self._open_since.setdefault(compartment_id, self._state.monotonic())
        else:
            self._open_since.pop(compartment_id, None)
            self._left_open_alarms.pop(compartment_id, None)
        try:
            self._state.apply(
                lambda: self._state.locker.door_changed(
                    compartment_id, state, now=self._state.now())
            )
        except Exception:
            logger.exception(
                "could not record a door change",
                extra={"fields": {"compartment": compartment_id, "door": state.value}},
            )

    def _reconcile_doors(self) -> None:
        """Bring recorded doors in line with the sensors and settle unlocks a restart cut off.

        An unlock whose door never opened is abandoned, not retried: a restart must never
        open a door by itself.
        """
        now = self._state.now()
        for compartment_id, state in self._doors.read().items():
            known = compartment_id in self._state.locker.compartments
            if known and state is not DoorState.UNKNOWN:
                self._door_changed(compartment_id, state)
        for compartment_id, intent in list(self._state.locker.intents.items()):
            if not intent.door_opened:
                self._abandon(compartment_id, "restarted_before_door_opened", now)

    def check_doors_left_open(self) -> None:
        """Alarm for a door open too long, again every alarm period until it closes."""
        limit = self.policy.door_left_open_alarm_s
        now = self._state.monotonic()
        for compartment_id, since in list(self._open_since.items()):
            alarms = self._left_open_alarms.get(compartment_id, 0)
            if now - since >= limit * (alarms + 1):
                self._left_open_alarms[compartment_id] = alarms + 1
                event = DomainEvent(
                    "door_left_open", self._state.now(), compartment_id,
                    data={"open_s": round(now - since), "alarm": alarms + 1},
                )
                self._state.apply(lambda e=event: [e])  # type: ignore[misc]

    # ------------------------------------------------------------------ unlocks

    def _events_committed(self, stored: Sequence[StoredEvent]) -> None:
        for event in stored:
            if event.type == "unlock_requested" and event.compartment_id:
                self._start_unlock(event.compartment_id)

    def _start_unlock(self, compartment_id: str, attempt: int = 1) -> None:
        if self._power is None:
            # Not started: the intent stays on record and start() settles it without a pulse.
            logger.warning(
                "unlock requested before start; it will be abandoned at start",
                extra={"fields": {"compartment": compartment_id}},
            )
            return
        task = asyncio.get_running_loop().create_task(self._unlock(compartment_id, attempt))
        self._unlock_tasks.add(task)
        task.add_done_callback(self._unlock_tasks.discard)

    async def _unlock(self, compartment_id: str, attempt: int = 1) -> None:
        assert self._power is not None, "start() the service before opening doors"
        state = self._state
        pulsed_for = state.locker.intents.get(compartment_id)  # the unlock this pulse serves
        if pulsed_for is None:
            return

        def still_wanted() -> bool:  # asked when the power budget lets this pulse go
            return state.accepting and state.locker.intents.get(compartment_id) is pulsed_for

        def pulse_starting() -> None:  # the relay is about to go on
            self._pulse_starting(compartment_id, pulsed_for)

        try:
            await self._power.unlock(
                compartment_id, self.policy.pulse_s, still_wanted=still_wanted,
                on_pulse=pulse_starting,
            )
        except UnlockWithdrawn:
            if state.locker.intents.get(compartment_id) is pulsed_for:
                self._abandon(compartment_id, "shutting_down")
            return
        except (HardwareError, ValueError) as exc:
            logger.error(
                "unlock failed",
                extra={"fields": {"compartment": compartment_id, "error": str(exc)}},
            )
            self._abandon(compartment_id, "lock_failed", error=str(exc))
            return
        if state.locker.intents.get(compartment_id) is pulsed_for:
            self._watch(self._await_door(compartment_id, pulsed_for, attempt))

    def _pulse_starting(self, compartment_id: str, intent: UnlockIntent) -> None:
        """Record ``unlock_pulsed`` as soon as the relay is on, and before any door change.

        Not committed here, just before the driver energises: that cost one more fsync
        between the code and the relay (the intent, committed first, is what the relay must
        wait for). The record runs at the loop's next turn, once the driver has switched the
        relay on; a door change of this compartment that comes first records it before
        itself, so ``unlock_pulsed`` always precedes that opening's ``door_opened``.
        """
        self._pulses_to_record[compartment_id] = (intent, self._state.now())
        asyncio.get_running_loop().call_soon(self._record_pulse, compartment_id)

    def _record_pulse(self, compartment_id: str) -> None:
        pending = self._pulses_to_record.pop(compartment_id, None)
        if pending is None:
            return
        intent, at = pending
        state = self._state
        try:
            state.apply(lambda: state.locker.record_pulse(compartment_id, now=at, intent=intent))
        except Exception:
            logger.exception("could not record the start of a pulse",
                             extra={"fields": {"compartment": compartment_id}})

    async def _await_door(
        self, compartment_id: str, pulsed_for: UnlockIntent, attempt: int = 1
    ) -> None:
        """A pulse with no opening is a jam: pulse once more, then take the compartment out.

        The customer's code stays valid (the parcel is still inside); the compartment goes out
        of service so nobody else is sent to a door that will not open.
        """
        await asyncio.sleep(self.policy.door_open_timeout_s)
        state = self._state
        intent = state.locker.intents.get(compartment_id)
        if intent is not pulsed_for or intent.door_opened:
            return  # opened, or done, or a newer unlock that has its own watch
        jammed = DomainEvent(
            "door_jammed", state.now(), compartment_id,
            data={"attempt": attempt, "purpose": intent.purpose.value, "actor": intent.actor,
                  "retry": attempt < JAM_ATTEMPTS},
        )
        state.apply(lambda: [jammed])
        if attempt < JAM_ATTEMPTS and state.accepting:
            self._start_unlock(compartment_id, attempt + 1)
            return
        self._abandon(compartment_id, "door_not_opened")
        try:
            state.apply(lambda: state.locker.set_compartment_service(
                compartment_id, in_service=False,
                reason=f"jammed: the door did not open after {attempt} pulses",
                now=state.now(),
            ))
        except DomainError:
            logger.exception("could not take a jammed compartment out of service")

    def _abandon(
        self, compartment_id: str, reason: str, now: datetime | None = None,
        error: str | None = None,
    ) -> None:
        state = self._state
        at = now or state.now()
        self._record_pulse(compartment_id)  # a pulse begun is on record before its end
        try:
            state.apply(lambda: state.locker.abandon_unlock(
                compartment_id, reason=reason, now=at, error=error))
        except DomainError:
            logger.exception("could not abandon an unlock")

    def _watch(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._watches.add(task)
        task.add_done_callback(self._watches.discard)
