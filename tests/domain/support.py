"""Shared helpers for the domain tests: a fixed secret, a fixed clock, an archive and snapshots."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.locker import Changes, Locker
from locker_agent.domain.model import AssignmentStatus, Compartment

SECRET = b"locker-agent/tests/fixed-secret!"
assert len(SECRET) == 32

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Archive:
    """Dict-backed stand-in for the store: remembers the final status of forgotten assignments."""

    def __init__(self) -> None:
        self.statuses: dict[str, AssignmentStatus] = {}

    def __call__(self, assignment_id: str) -> AssignmentStatus | None:
        return self.statuses.get(assignment_id)

    def record(self, changes: Changes) -> Changes:
        for assignment_id, assignment in changes.assignments.items():
            if assignment.terminal:
                self.statuses[assignment_id] = assignment.status
        return changes


def compartments(spec: Iterable[tuple[str, str, bool]]) -> list[Compartment]:
    return [Compartment(id=cid, size=size, accessible=accessible) for cid, size, accessible in spec]


def make_locker(spec: Iterable[tuple[str, str, bool]], archive: Archive) -> Locker:
    return Locker("locker-1", compartments(spec), CodeHasher(SECRET), archive=archive)


def take_changes(locker: Locker, archive: Archive) -> Changes:
    """What the store would do: take the changes and archive what finished."""
    return archive.record(locker.take_changes())


def snapshot(locker: Locker) -> dict[str, Any]:
    """A deep copy of everything a transition may change, including pending changes."""
    return copy.deepcopy(
        {
            "locker_id": locker.locker_id,
            "sizes": locker.sizes,
            "out_of_service_reason": locker.out_of_service_reason,
            "clock": locker.clock.seconds,
            "compartments": locker.compartments,
            "assignments": locker.assignments,
            "credentials": locker.credentials,
            "intents": locker.intents,
            "changes": vars(locker._changes),
        }
    )
