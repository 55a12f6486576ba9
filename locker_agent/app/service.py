"""The locker's service: the state owner with its code desk and its unlock runner, started
and stopped as one, ticking the service clock.

Everything that changes the locker goes through :meth:`LockerService.apply` (see
:mod:`.state`); codes become openings in :mod:`.code_desk`, and openings become pulses and
watched doors in :mod:`.unlocks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime

from locker_agent.app.code_desk import CodeDesk
from locker_agent.app.code_gate import CodeGate, Namespace
from locker_agent.app.outcomes import CodeOutcome
from locker_agent.app.ports.hardware import CodeEntry, DoorSensors, LockDriver
from locker_agent.app.ports.storage import LockerStore, StorageFull, StoredEvent
from locker_agent.app.state import LockerState, utc_now
from locker_agent.app.unlocks import DEFAULT_UNLOCK_POLICY, UnlockPolicy, UnlockRunner
from locker_agent.domain.errors import InvalidCode
from locker_agent.domain.locker import Locker
from locker_agent.domain.model import DomainEvent

logger = logging.getLogger(__name__)

TICK_INTERVAL_S = 1.0
CLOCK_SAVE_INTERVAL_S = 60.0
"""How often the service clock is written when nothing else changes: losing up to this much
on a power cut only ever lengthens a hold period, and fewer writes spare the SD card."""


class LockerService(LockerState):
    def __init__(
        self,
        locker: Locker,
        store: LockerStore,
        locks: LockDriver,
        doors: DoorSensors,
        *,
        reload: Callable[[], Locker],
        unlock_policy: UnlockPolicy = DEFAULT_UNLOCK_POLICY,
        labels: Mapping[str, str] | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        gate: CodeGate | None = None,
        wall_floor: datetime | None = None,
    ) -> None:
        super().__init__(locker, store, reload=reload, labels=labels, wall_clock=wall_clock,
                         monotonic=monotonic, gate=gate, wall_floor=wall_floor)
        self.unlocks = UnlockRunner(self, locks, doors, unlock_policy)
        """Pulses for committed unlocks, jams, doors left open (subscribed first)."""
        self.codes = CodeDesk(self)
        """Customers' codes and tokens, and the refusals of every namespace."""
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reconcile with the door sensors, then begin accepting codes and ticking."""
        self.store.restore_reserve()
        self.unlocks.start()
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
        await self.unlocks.stop()
        try:
            self.store.save_clock(self.locker)
        except StorageFull:
            logger.error("could not save the service clock: the disk is full")

    @property
    def unlock_policy(self) -> UnlockPolicy:
        return self.unlocks.policy

    def set_unlock_policy(self, policy: UnlockPolicy) -> None:
        """New pulse length, power budget and timeouts; pulses in progress finish as they were."""
        self.unlocks.set_policy(policy)

    # ------------------------------------------------------------------- codes

    async def submit_code(self, entry: CodeEntry) -> CodeOutcome:
        """A customer typed or scanned a code: open what it opens, or say why not."""
        return await self.codes.submit(entry)

    def refuse_code(
        self, namespace: Namespace, source: str, error: InvalidCode, now: datetime
    ) -> CodeOutcome:
        """Count a wrong code toward the lockout, record it (never the code), say what to do."""
        return self.codes.refuse(namespace, source, error, now)

    def record_token_refusal(self, namespace: Namespace, source: str, reason: str) -> None:
        self.codes.record_token_refusal(namespace, source, reason)

    def opened(self, stored: Sequence[StoredEvent], then: str) -> CodeOutcome:
        return self.codes.opened(stored, then)

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

    # --------------------------------------------------------------------- clock

    async def _tick_forever(self) -> None:
        last = self._monotonic()
        last_saved = last
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            current = self._monotonic()
            try:
                if self.storage_full is not None:
                    self.storage_recovered()
                self.unlocks.check_doors_left_open()
                self.tick(current - last)
                if current - last_saved >= CLOCK_SAVE_INTERVAL_S:
                    self.store.save_clock(self.locker)
                    last_saved = current
            except StorageFull as exc:
                self.storage_failed(exc)
            except Exception:
                logger.exception("tick failed")
            last = current

    def tick(self, elapsed: float) -> list[StoredEvent]:
        """Let ``elapsed`` monotonic seconds pass; commit any expiry or lapse it caused."""
        return self.apply(lambda: self.locker.tick(elapsed, now=self._now()))

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
