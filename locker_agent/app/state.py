"""The one owner of locker state.

Every change to the locker, whatever it came from (a keypad, a door sensor, the cloud, the
clock), runs here on the asyncio event loop as one synchronous step: the domain transition and
the commit of its changes and events happen with no ``await`` in between, so two inputs can
never interleave and two codes can never race for one door.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from locker_agent.app.code_gate import CodeGate
from locker_agent.app.ports.storage import InboxRecord, LockerStore, StorageFull, StoredEvent
from locker_agent.domain.errors import DomainError
from locker_agent.domain.locker import Locker
from locker_agent.domain.model import DomainEvent

logger = logging.getLogger(__name__)

Transition = Callable[[], list[DomainEvent]]
EventListener = Callable[[Sequence[StoredEvent]], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LockerState:
    """Runs transitions on the live :class:`Locker` and commits them; tells listeners."""

    def __init__(
        self,
        locker: Locker,
        store: LockerStore,
        *,
        reload: Callable[[], Locker],
        labels: Mapping[str, str] | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        gate: CodeGate | None = None,
        wall_floor: datetime | None = None,
    ) -> None:
        self.locker = locker
        self.store = store
        self.gate = gate or CodeGate(store.code_guard(), locker_id=locker.locker_id)
        """Lockouts, signed tokens and their ledger: what a code passes before it is matched."""
        self._reload = reload
        self._labels = dict(labels or {})
        self._now = wall_clock
        self._monotonic = monotonic
        self._floor = wall_floor
        self._floor_at = monotonic()
        self._floor_lock = threading.Lock()
        self._listeners: list[EventListener] = []
        self._accepting = False
        self._unrecorded: DomainEvent | None = None
        """A storage_full the disk had no room for even with the reserve back: kept until it
        can be written, so the fact is never lost."""
        self.storage_full: str | None = None
        """Why the last write failed for want of space, until one succeeds again: while set,
        no code is taken (its lockout could not be kept), and health says so."""

    def subscribe(self, listener: EventListener) -> None:
        """Be told about every committed batch of events (the cloud link listens here)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: EventListener) -> None:
        """Stop telling ``listener``; one that was never subscribed is ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

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
        except StorageFull as exc:
            self.locker = self._reload()
            self.storage_failed(exc)
            raise
        except Exception:
            logger.exception("commit failed; reloading state from the database")
            self.locker = self._reload()
            raise
        self._tell(stored)
        return stored

    def _tell(self, stored: list[StoredEvent]) -> None:
        for event in stored:
            _log_event(event)
        for listener in list(self._listeners):
            try:
                listener(stored)
            except Exception:
                logger.exception("event listener failed")

    def storage_failed(self, error: Exception) -> None:
        """A write found no room: give back the reserve, and record the fact with it."""
        first = self.storage_full is None
        self.storage_full = str(error)[:300]
        if not first:
            return
        logger.critical("the disk is full: codes are refused until there is room again",
                        extra={"fields": {"error": self.storage_full}})
        released = self.store.release_reserve()
        event = DomainEvent("storage_full", self.now(), data={
            "error": self.storage_full, "reserve_released": released})
        try:
            stored = self.store.commit(self.locker, [event])
        except Exception:
            logger.exception("could not record that the disk is full; it will be when it can")
            self.locker = self._reload()
            self._unrecorded = event
            return
        self._tell(stored)

    def storage_recovered(self) -> None:
        """There is room again: keep a reserve, say so, take codes again."""
        if self.storage_full is None or not self.store.restore_reserve():
            return
        late = [self._unrecorded] if self._unrecorded is not None else []
        events = [*late, DomainEvent("storage_recovered", self.now())]
        try:
            self.apply(lambda: list(events))
        except StorageFull:
            return  # not yet, after all
        self.storage_full = None
        self._unrecorded = None
        logger.warning("the disk has room again: codes are taken again")

    def now(self) -> datetime:
        """Wall-clock time for event timestamps and code expiry (never for hold periods).

        Never earlier than the latest time already given out (or, at start, committed) plus
        the monotonic seconds since: a clock set back, or a board booting with its clock
        behind, cannot make the locker believe an earlier time (docs/clocks.md).
        """
        with self._floor_lock:  # also asked from worker threads (health, retention)
            wall = self._now()
            if self._floor is not None:
                elapsed = max(0.0, self._monotonic() - self._floor_at)
                floor = self._floor + timedelta(seconds=elapsed)
                if wall < floor:
                    return floor
            self._floor, self._floor_at = wall, self._monotonic()
            return wall

    def monotonic(self) -> float:
        """Seconds for measuring intervals (sessions, timeouts): never jumps with the clock."""
        return self._monotonic()

    def code_clock(self) -> float:
        """The service clock, in seconds: what lockout waits run on (never the wall clock)."""
        return self.locker.clock.seconds

    @property
    def accepting(self) -> bool:
        """Whether inputs are taken: between start and stop of the service."""
        return self._accepting

    @property
    def labels(self) -> Mapping[str, str]:
        return self._labels

    def label(self, compartment_id: str) -> str:
        return self._labels.get(compartment_id, compartment_id)


def _log_event(event: StoredEvent) -> None:
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
    "storage_full", "command_flood", "code_collision_alarm", "release_held_back",
    "board_offline", "door_forced", "door_jammed", "door_left_open", "unlock_abandoned",
    "out_of_service",
})
