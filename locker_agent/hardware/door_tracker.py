"""A building block for door sensor adapters: last known states and who to tell of changes."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from locker_agent.app.ports.hardware import DoorListener
from locker_agent.domain.model import DoorState

logger = logging.getLogger(__name__)


class DoorStateTracker:
    """Last known door states and the listeners to tell about changes.

    A building block for DoorSensors adapters: it drops repeats of the same state and keeps a
    failing listener from silencing the others. Call it on the event loop thread only.
    """

    def __init__(
        self, compartment_ids: Iterable[str], *, initial: DoorState = DoorState.UNKNOWN
    ) -> None:
        self._states = dict.fromkeys(compartment_ids, initial)
        self._listeners: list[DoorListener] = []

    def __contains__(self, compartment_id: object) -> bool:
        return compartment_id in self._states

    def __getitem__(self, compartment_id: str) -> DoorState:
        return self._states[compartment_id]

    def snapshot(self) -> dict[str, DoorState]:
        return dict(self._states)

    def subscribe(self, listener: DoorListener) -> None:
        self._listeners.append(listener)

    def update(self, compartment_id: str, state: DoorState, *, notify: bool = True) -> bool:
        """Record ``state``; tell the listeners if it is a change and ``notify`` is set.

        Returns whether the state changed. Raises KeyError for an unknown compartment.
        """
        if self._states[compartment_id] == state:
            return False
        self._states[compartment_id] = state
        if notify:
            for listener in list(self._listeners):
                try:
                    listener(compartment_id, state)
                except Exception:
                    logger.exception(
                        "door listener %r failed on %s -> %s", listener, compartment_id, state
                    )
        return True
