"""The one owner of locker state.

Every change to the locker, whatever it came from (a keypad, a door sensor, the cloud, the
clock), runs here on the asyncio event loop as one synchronous step: the domain transition and
the commit of its changes and events happen with no ``await`` in between, so two inputs can
never interleave and two codes can never race for one door.

Doors are opened intent-first: the ``unlock_requested`` event is committed before the relay
moves, and ``unlock_pulsed`` after. A door that has not opened ``door_open_timeout_s`` after
its pulse is given up on (``unlock_abandoned``) so the customer's code works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from locker_agent.code_gate import CodeGate, Namespace
from locker_agent.domain.errors import DomainError, InvalidCode, LockedOut
from locker_agent.domain.locker import Locker
from locker_agent.domain.model import CredentialKind, DomainEvent, DoorState, UnlockIntent
from locker_agent.hardware.interfaces import CodeEntry, DoorSensors, HardwareError, LockDriver
from locker_agent.hardware.safety import SafeLocks, UnlockWithdrawn
from locker_agent.store import InboxRecord, Store, StoredEvent
from locker_agent.store.code_guard import CodeGuardStore
from locker_agent.tokens import CourierToken

if TYPE_CHECKING:
    from locker_agent.courier_desk import CourierView

logger = logging.getLogger(__name__)

Transition = Callable[[], list[DomainEvent]]
EventListener = Callable[[Sequence[StoredEvent]], None]

TICK_INTERVAL_S = 1.0
CLOCK_SAVE_INTERVAL_S = 60.0
"""How often the service clock is written when nothing else changes: losing up to this much
on a power cut only ever lengthens a hold period, and fewer writes spare the SD card."""


@dataclass(frozen=True)
class UnlockPolicy:
    pulse_s: float = 0.5
    max_simultaneous: int = 1
    gap_s: float = 0.2
    door_open_timeout_s: float = 10.0
    door_left_open_alarm_s: float = 120.0


@dataclass(frozen=True)
class CodeOutcome:
    """What to tell the person who entered a code (or took a courier step)."""

    ok: bool
    message: str
    compartments: tuple[str, ...] = ()
    reason: str | None = None
    retry_after_s: float | None = None
    """Set when a lockout refused the entry: how long until the next try is accepted."""
    courier: CourierView | None = None
    """The courier's session after a courier step (see :mod:`locker_agent.courier_desk`)."""


NOT_READY = CodeOutcome(
    False, "The locker is not ready; please try again in a minute.", reason="not_accepting"
)
"""Said to every code entered before the service has started or while it stops."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class LockerService:
    def __init__(
        self,
        locker: Locker,
        store: Store,
        locks: LockDriver,
        doors: DoorSensors,
        *,
        reload: Callable[[], Locker],
        unlock_policy: UnlockPolicy = UnlockPolicy(),
        labels: Mapping[str, str] | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        gate: CodeGate | None = None,
    ) -> None:
        self.locker = locker
        self.store = store
        self.gate = gate or CodeGate(CodeGuardStore(store.engine), locker_id=locker.locker_id)
        """Lockouts, signed tokens and their ledger: what a code passes before it is matched."""
        self._locks = locks
        self._doors = doors
        self._reload = reload
        self._policy = unlock_policy
        self._labels = dict(labels or {})
        self._now = wall_clock
        self._monotonic = monotonic
        self._listeners: list[EventListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._unlock_tasks: set[asyncio.Task[None]] = set()
        self._power: SafeLocks | None = None
        """The locks under the safety rules (power budget, gap); set by start()."""
        self._accepting = False
        self._open_since: dict[str, float] = {}
        self._token_refusals: dict[str, float] = {}
        self._left_open_alarms: dict[str, int] = {}

    # ------------------------------------------------------------------ plumbing

    def subscribe(self, listener: EventListener) -> None:
        """Be told about every committed batch of events (the cloud link listens here)."""
        self._listeners.append(listener)

    def apply(
        self,
        transition: Transition,
        *,
        inbox: Callable[[Sequence[DomainEvent]], InboxRecord] | None = None,
        policy_overrides: Mapping[str, object] | None = None,
    ) -> list[StoredEvent]:
        """Run one domain transition and commit its changes and events together.

        A refused transition (DomainError) changed nothing and is re-raised. If the commit
        fails, memory is rebuilt from the file, so memory never claims what the disk lacks.
        ``inbox`` builds the record of the command that asked for this (from the events it
        produced); it is committed in the same transaction, as are ``policy_overrides``.
        """
        try:
            events = transition()
        except DomainError:
            raise
        except Exception:
            self.locker = self._reload()
            raise
        try:
            record = inbox(events) if inbox is not None else None
        except Exception:
            # the transition changed memory; without its record it must not stay there
            self.locker = self._reload()
            raise
        if not events and not self.locker.has_changes and record is None and not policy_overrides:
            return []
        try:
            stored = self.store.commit(
                self.locker, events, inbox=record, policy_overrides=policy_overrides
            )
        except Exception:
            logger.exception("commit failed; reloading state from the database")
            self.locker = self._reload()
            raise
        for event in stored:
            self._log_event(event)
            if event.type == "unlock_requested" and event.compartment_id:
                self._start_unlock(event.compartment_id)
        for listener in list(self._listeners):
            try:
                listener(stored)
            except Exception:
                logger.exception("event listener failed")
        return stored

    def now(self) -> datetime:
        """Wall-clock time for event timestamps and code expiry (never for hold periods)."""
        return self._now()

    def monotonic(self) -> float:
        """Seconds for measuring intervals (sessions, timeouts): never jumps with the clock."""
        return self._monotonic()

    @property
    def labels(self) -> Mapping[str, str]:
        return self._labels

    def label(self, compartment_id: str) -> str:
        return self._labels.get(compartment_id, compartment_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reconcile with the door sensors, then begin accepting codes and ticking."""
        self._power = self._locks if isinstance(self._locks, SafeLocks) else SafeLocks(self._locks)
        self._power.set_budget(
            max_simultaneous=self._policy.max_simultaneous, gap_s=self._policy.gap_s
        )
        self._doors.subscribe(self._door_changed)
        self._reconcile_doors()
        self._accepting = True
        self._spawn(self._tick_forever())

    async def stop(self) -> None:
        """Stop taking codes, let any pulse finish, then save the clock."""
        self._accepting = False
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unlock_tasks:
            # a pulse in progress finishes; nothing waits for doors any longer
            await asyncio.gather(*self._unlock_tasks, return_exceptions=True)
        self.store.save_clock(self.locker)

    def set_unlock_policy(self, policy: UnlockPolicy) -> None:
        """New pulse length, power budget and timeouts; pulses in progress finish as they were."""
        if self._power is not None:
            self._power.set_budget(max_simultaneous=policy.max_simultaneous, gap_s=policy.gap_s)
        self._policy = policy

    @property
    def accepting(self) -> bool:
        return self._accepting

    # ------------------------------------------------------------------- codes

    async def submit_code(self, entry: CodeEntry) -> CodeOutcome:
        """A customer typed or scanned a code: open what it opens, or say why not.

        Signed tokens are checked by signature (they cannot be guessed, so no lockout applies
        to them); every other code first passes the lockout, and a wrong one counts toward it.
        """
        if not self._accepting:
            return NOT_READY
        now = self._now()
        if self.gate.is_token(entry.text):
            return self._submit_token(entry, now)
        try:
            self.gate.check(Namespace.CUSTOMER, entry.source, self.code_clock())
        except LockedOut as exc:
            return CodeOutcome(False, exc.message, reason="locked_out",
                               retry_after_s=exc.retry_after_s)
        try:
            credential = self.locker.authenticate(
                entry.text, now=now, kinds=(CredentialKind.PICKUP, CredentialKind.RETURN)
            )
            if credential.kind is CredentialKind.PICKUP:
                stored = self.apply(lambda: self.locker.begin_pickup(
                    credential, now=now, source=entry.source))
            else:
                stored = self.apply(lambda: self.locker.begin_return_deposit(
                    credential, now=now, source=entry.source))
        except InvalidCode as exc:
            return self.refuse_code(Namespace.CUSTOMER, entry.source, exc, now)
        except DomainError as exc:
            return CodeOutcome(False, exc.message, reason=exc.code)
        self.gate.succeeded(Namespace.CUSTOMER, entry.source, now)
        return self.opened(stored, "please close the door when you are done.")

    def code_clock(self) -> float:
        """The service clock, in seconds: what lockout waits run on (never the wall clock)."""
        return self.locker.clock.seconds

    def _submit_token(self, entry: CodeEntry, now: datetime) -> CodeOutcome:
        """A signed pickup token: one use that opened the door, then refused as a replay.

        A token whose earlier use never got the door open (a jam, a restart before the door
        moved) works again while its parcel is still inside: the ledger stops a second
        opening, not a customer whose first one failed.
        """
        try:
            token = self.gate.verify_token(entry.text, now)
            if isinstance(token, CourierToken):
                return CodeOutcome(
                    False, "This is a courier pass: choose Courier on the screen first.",
                    reason="courier_token",
                )
            if self.gate.token_used(token) and not self.locker.collectable(token.assignment_id):
                raise InvalidCode("This code has already been used.", reason="token_replayed")
            stored = self.apply(lambda: self.locker.begin_token_pickup(
                token.assignment_id, now=now, source=entry.source))
        except InvalidCode as exc:
            self.record_token_refusal(Namespace.CUSTOMER, entry.source, exc.reason)
            return CodeOutcome(False, exc.message, reason=exc.reason)
        except DomainError as exc:
            return CodeOutcome(False, exc.message, reason=exc.code)
        try:
            self.gate.use_token(token, now)
        except Exception:
            logger.exception("could not record a used token; the door opens regardless")
        return self.opened(stored, "please close the door when you are done.")

    def refuse_code(
        self, namespace: Namespace, source: str, error: InvalidCode, now: datetime
    ) -> CodeOutcome:
        """Count a wrong code toward the lockout, record it (never the code), say what to do."""
        self._record_refusal(namespace, source, error.reason)
        if error.reason == "in_use":
            return CodeOutcome(False, error.message, reason=error.reason)
        failure = self.gate.failed(namespace, source, self.code_clock(), now)
        if failure.refusal is None:
            return CodeOutcome(False, error.message, reason=error.reason)
        scope = "locker" if failure.locker_locked else "input"
        if scope == "input" or failure.newly_locked:
            event = DomainEvent(
                "code_lockout", now,
                data={"namespace": namespace.value, "scope": scope, "source": source,
                      "retry_after_s": failure.refusal.retry_after_s},
            )
            self.apply(lambda: [event])
        return CodeOutcome(False, f"{error.message} {failure.refusal.message}",
                           reason=error.reason, retry_after_s=failure.refusal.retry_after_s)

    def record_token_refusal(self, namespace: Namespace, source: str, reason: str) -> None:
        """A refused signed token: recorded, but at most one event a second per input.

        Tokens skip the lockout (they cannot be guessed), so nothing else bounds how fast
        someone can scan junk; the events, not the refusals, are what is thinned out.
        """
        last = self._token_refusals.get(source)
        current = self._monotonic()
        if last is not None and current - last < TOKEN_REFUSAL_EVENT_GAP_S:
            logger.info("token refused", extra={"fields": {
                "namespace": namespace.value, "source": source, "reason": reason}})
            return
        self._token_refusals[source] = current
        self._record_refusal(namespace, source, reason)

    def _record_refusal(self, namespace: Namespace, source: str, reason: str) -> None:
        logger.warning("code refused", extra={"fields": {
            "namespace": namespace.value, "source": source, "reason": reason}})
        event = DomainEvent(
            "code_refused", self._now(),
            data={"namespace": namespace.value, "source": source, "reason": reason},
        )
        try:
            self.apply(lambda: [event])
        except Exception:
            logger.exception("could not record a refused code")

    def opened(self, stored: Sequence[StoredEvent], then: str) -> CodeOutcome:
        """The outcome of a step that opened doors: which, where, and what to do next."""
        opened = tuple(e.compartment_id for e in stored if e.type == "unlock_requested"
                       and e.compartment_id)
        if not opened:
            return CodeOutcome(False, "No compartment could be opened.", reason="nothing_opened")
        labels = ", ".join(self.label(c) for c in opened)
        noun = "Compartment" if len(opened) == 1 else "Compartments"
        verb = "is" if len(opened) == 1 else "are"
        return CodeOutcome(True, f"{noun} {labels} {verb} opening — {then}", compartments=opened)

    # ------------------------------------------------------------ lock boards

    def board_changed(self, board: int, online: bool, compartments: Sequence[str]) -> None:
        """A lock-control board stopped answering (or answers again).

        Its compartments go out of service while it is silent, so no customer is sent to a
        door that cannot open, and come back when it answers — unless something else took
        them out meanwhile. Never fatal: the rest of the locker keeps working.
        """
        reason = f"lock board {board} is not answering"
        now = self._now()
        event = DomainEvent("board_online" if online else "board_offline", now,
                            data={"board": board, "compartments": list(compartments)})

        def transition() -> list[DomainEvent]:
            events = [event]
            for compartment_id in compartments:
                compartment = self.locker.compartments.get(compartment_id)
                if compartment is None:
                    continue
                if not online:
                    events += self.locker.set_compartment_service(
                        compartment_id, in_service=False, reason=reason, now=now)
                else:
                    events += self.locker.lift_out_of_service_reason(
                        compartment_id, reason=reason, now=now)
            return events

        try:
            self.apply(transition)
        except Exception:
            logger.exception("could not record a lock board change",
                             extra={"fields": {"board": board, "online": online}})

    # -------------------------------------------------------------------- doors

    def _door_changed(self, compartment_id: str, state: DoorState) -> None:
        if state is DoorState.OPEN:
            self._open_since.setdefault(compartment_id, self._monotonic())
        else:
            self._open_since.pop(compartment_id, None)
            self._left_open_alarms.pop(compartment_id, None)
        try:
            self.apply(
                lambda: self.locker.door_changed(compartment_id, state, now=self._now())
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
        now = self._now()
        for compartment_id, state in self._doors.read().items():
            if compartment_id in self.locker.compartments and state is not DoorState.UNKNOWN:
                self._door_changed(compartment_id, state)
        for compartment_id, intent in list(self.locker.intents.items()):
            if not intent.door_opened:
                self._abandon(compartment_id, "restarted_before_door_opened", now)

    # ------------------------------------------------------------------ unlocks

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
        pulsed_for = self.locker.intents.get(compartment_id)  # the unlock this pulse serves
        if pulsed_for is None:
            return

        def still_wanted() -> bool:  # asked when the power budget lets this pulse go
            return self._accepting and self.locker.intents.get(compartment_id) is pulsed_for

        try:
            await self._power.unlock(
                compartment_id, self._policy.pulse_s, still_wanted=still_wanted
            )
        except UnlockWithdrawn:
            if self.locker.intents.get(compartment_id) is pulsed_for:
                self._abandon(compartment_id, "shutting_down")
            return
        except (HardwareError, ValueError) as exc:
            logger.error(
                "unlock failed",
                extra={"fields": {"compartment": compartment_id, "error": str(exc)}},
            )
            self._abandon(compartment_id, "lock_failed")
            return
        self.apply(lambda: self.locker.record_pulse(
            compartment_id, now=self._now(), intent=pulsed_for))
        if self.locker.intents.get(compartment_id) is pulsed_for:
            self._spawn(self._await_door(compartment_id, pulsed_for, attempt))

    async def _await_door(
        self, compartment_id: str, pulsed_for: UnlockIntent, attempt: int = 1
    ) -> None:
        """A pulse with no opening is a jam: pulse once more, then take the compartment out.

        The customer's code stays valid (the parcel is still inside); the compartment goes out
        of service so nobody else is sent to a door that will not open.
        """
        await asyncio.sleep(self._policy.door_open_timeout_s)
        intent = self.locker.intents.get(compartment_id)
        if intent is not pulsed_for or intent.door_opened:
            return  # opened, or done, or a newer unlock that has its own watch
        jammed = DomainEvent(
            "door_jammed", self._now(), compartment_id,
            data={"attempt": attempt, "purpose": intent.purpose.value, "actor": intent.actor,
                  "retry": attempt < JAM_ATTEMPTS},
        )
        self.apply(lambda: [jammed])
        if attempt < JAM_ATTEMPTS and self._accepting:
            self._start_unlock(compartment_id, attempt + 1)
            return
        self._abandon(compartment_id, "door_not_opened")
        try:
            self.apply(lambda: self.locker.set_compartment_service(
                compartment_id, in_service=False,
                reason=f"jammed: the door did not open after {attempt} pulses",
                now=self._now(),
            ))
        except DomainError:
            logger.exception("could not take a jammed compartment out of service")

    def _check_doors_left_open(self) -> None:
        """Alarm for a door open too long, again every alarm period until it closes."""
        limit = self._policy.door_left_open_alarm_s
        now = self._monotonic()
        for compartment_id, since in list(self._open_since.items()):
            alarms = self._left_open_alarms.get(compartment_id, 0)
            if now - since >= limit * (alarms + 1):
                self._left_open_alarms[compartment_id] = alarms + 1
                event = DomainEvent(
                    "door_left_open", self._now(), compartment_id,
                    data={"open_s": round(now - since), "alarm": alarms + 1},
                )
                self.apply(lambda e=event: [e])  # type: ignore[misc]

    def _abandon(self, compartment_id: str, reason: str, now: datetime | None = None) -> None:
        at = now or self._now()
        try:
            self.apply(lambda: self.locker.abandon_unlock(compartment_id, reason=reason, now=at))
        except DomainError:
            logger.exception("could not abandon an unlock")

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --------------------------------------------------------------------- clock

    async def _tick_forever(self) -> None:
        last = self._monotonic()
        last_saved = last
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            current = self._monotonic()
            try:
                self._check_doors_left_open()
                self.tick(current - last)
                if current - last_saved >= CLOCK_SAVE_INTERVAL_S:
                    self.store.save_clock(self.locker)
                    last_saved = current
            except Exception:
                logger.exception("tick failed")
            last = current

    def tick(self, elapsed: float) -> list[StoredEvent]:
        """Let ``elapsed`` monotonic seconds pass; commit any expiry or lapse it caused."""
        return self.apply(lambda: self.locker.tick(elapsed, now=self._now()))

    # -------------------------------------------------------------------- logs

    def _log_event(self, event: StoredEvent) -> None:
        fields: dict[str, object] = {"event": event.type, "seq": event.seq}
        if event.compartment_id:
            fields["compartment"] = event.compartment_id
        if event.assignment_id:
            fields["assignment"] = event.assignment_id
        for key, value in event.data.items():
            fields.setdefault(key, value)
        level = logging.WARNING if event.type in _ALARMS else logging.INFO
        logger.log(level, event.type, extra={"fields": fields})


_ALARMS = frozenset({
    "board_offline", "door_forced", "door_jammed", "door_left_open", "unlock_abandoned",
    "out_of_service",
})
TOKEN_REFUSAL_EVENT_GAP_S = 1.0
JAM_ATTEMPTS = 2
"""Pulses given to a door that does not open before the compartment is taken out of service."""
