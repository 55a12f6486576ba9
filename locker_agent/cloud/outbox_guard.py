"""Keeps the outbox within its bound on disk while the cloud is out of reach.

Policy (documented in docs/mqtt-api.md): at 80 % of ``max_outbox_events`` unpublished events an
``outbox_high`` alarm event is raised (once, until the backlog falls under half); past the
bound the oldest unpublished events are dropped and an ``outbox_overflow`` event names exactly
which seqs were lost, so nothing ever disappears silently. The audit table keeps them locally.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from locker_agent.app.service import LockerService
from locker_agent.domain.model import DomainEvent

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
HIGH_WATER = 0.8
LOW_WATER = 0.5


class OutboxGuard:
    def __init__(
        self,
        service: LockerService,
        max_events: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._max = max_events
        self._monotonic = monotonic
        self._last_check = float("-inf")
        self._alarmed = False

    def check(self) -> None:
        """Raise the alarm or drop the oldest events if the backlog calls for it."""
        now = self._monotonic()
        if now - self._last_check < CHECK_INTERVAL_S:
            return
        self._last_check = now
        store = self._service.store
        depth = store.outbox_depth()
        if depth > self._max:
            dropped = store.drop_oldest_unpublished(depth - self._max)
            if dropped is not None:
                first, last, count = dropped
                logger.error(
                    "outbox over its bound: oldest events dropped",
                    extra={"fields": {"count": count, "first_seq": first, "last_seq": last}},
                )
                self._emit("outbox_overflow", dropped=count, first_seq=first, last_seq=last,
                           max_events=self._max)
        elif depth >= HIGH_WATER * self._max and not self._alarmed:
            self._alarmed = True
            self._emit("outbox_high", depth=depth, max_events=self._max)
        elif depth < LOW_WATER * self._max:
            self._alarmed = False

    def _emit(self, event_type: str, **data: object) -> None:
        event = DomainEvent(event_type, self._service.now(), data=dict(data))
        self._service.apply(lambda: [event])
