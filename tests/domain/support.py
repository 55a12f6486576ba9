"""Shared helpers for the domain tests: a fixed secret, a fixed clock, an archive and snapshots."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, is_dataclass
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


_FIELDS: dict[type, tuple[str, ...]] = {}
_MUTABLE = (set, dict, list)


def _freeze(value: Any) -> Any:
    """An immutable, comparable copy of ``value``: dataclasses field by field, sets, dicts and
    lists all the way down (everything else in the model is immutable already)."""
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in sorted(value.items(), key=lambda kv: kv[0]))
    if isinstance(value, set):
        return frozenset(value)
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    names = _FIELDS.get(type(value))
    if names is None:
        if not is_dataclass(value):
            return value
        names = _FIELDS[type(value)] = tuple(f.name for f in fields(value))
    return tuple(
        _freeze(v) if isinstance(v, _MUTABLE) else v
        for v in (getattr(value, n) for n in names)
    )


def snapshot(locker: Locker) -> dict[str, Any]:
    """A frozen copy of everything a transition may change, including pending changes."""
    changes = locker._changes
    return {
        "locker_id": locker.locker_id,
        "sizes": locker.sizes,
        "out_of_service_reason": locker.out_of_service_reason,
        "clock": locker.clock.seconds,
        "compartments": _freeze(locker.compartments),
        "assignments": _freeze(locker.assignments),
        "credentials": _freeze(locker.credentials),
        "intents": _freeze(locker.intents),
        # what is pending for the store: which objects were touched (their state is above)
        "changes": (
            frozenset(changes.compartments),
            frozenset(changes.assignments),
            frozenset(changes.credentials),
            _freeze(changes.intents),
            changes.locker,
        ),
    }
