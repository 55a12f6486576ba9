"""What the application layer needs from durable state, and the records it exchanges with it.

:class:`LockerStore` is the port: the store adapter (:mod:`locker_agent.store`) implements it
with SQLite. The records (:class:`StoredEvent`, :class:`InboxRecord`, :class:`AuditRecord`)
are plain values, so the cloud link and the local API read them without knowing the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from locker_agent.domain.locker import Locker
from locker_agent.domain.model import DomainEvent


class StoreError(Exception):
    """The stored state cannot be used as it is (says why and what to do)."""


class StorageFull(StoreError):
    """A write failed for want of space (or the card refused it): nothing of it was kept."""


@dataclass(frozen=True)
class InboxRecord:
    """A command as remembered for at-most-once: its id, name, arrival and the reply given."""

    command_id: str
    name: str
    received_at: datetime
    reply: Mapping[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    """An event as it sits in the outbox, ready to publish."""

    seq: int
    event_id: str
    type: str
    at: datetime
    compartment_id: str | None
    assignment_id: str | None
    data: dict[str, Any]

    def as_message(self, locker_id: str) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.event_id,
            "type": self.type,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "locker_id": locker_id,
            "compartment_id": self.compartment_id,
            "assignment_id": self.assignment_id,
            "data": self.data,
        }


@dataclass(frozen=True)
class AuditRecord:
    """One line of the local audit log, as the store keeps it (payload not yet decoded)."""

    id: int
    event_id: str
    type: str
    at: datetime
    compartment_id: str | None
    assignment_id: str | None
    payload: str | None


class CodeGuard(Protocol):
    """Where lockout counters, the used-token ledger and courier revocations are kept."""

    def load_lockout(self, namespace: str) -> dict[str, Any] | None: ...

    def save_lockout(self, namespace: str, state: dict[str, Any], at: datetime) -> None: ...

    def use_token(self, token_id: str, *, expires_at: datetime, now: datetime) -> bool: ...

    def token_used(self, token_id: str) -> bool: ...

    def revoke_courier(self, courier_id: str, at: datetime) -> None: ...

    def courier_revoked_at(self, courier_id: str) -> datetime | None: ...


class LockerStore(Protocol):
    """The locker's durable state: transitions with their events, the outbox and the inbox."""

    def commit(
        self,
        locker: Locker,
        events: Sequence[DomainEvent],
        *,
        inbox: InboxRecord | None = None,
        policy_overrides: Mapping[str, Any] | None = None,
    ) -> list[StoredEvent]:
        """Write what ``locker`` changed and ``events`` (and ``inbox``) in one transaction."""
        ...

    def save_clock(self, locker: Locker) -> None: ...

    # room on the disk
    def release_reserve(self) -> bool:
        """Give back the space kept in reserve (to record that the disk is full); whether
        there was any."""
        ...

    def restore_reserve(self) -> bool:
        """Keep space in reserve again; False while the disk has no room for it."""
        ...

    def code_guard(self) -> CodeGuard: ...

    # inbox: commands applied at most once
    def inbox_reply(self, command_id: str) -> dict[str, Any] | None: ...

    def record_command(self, record: InboxRecord) -> None: ...

    def policy_overrides(self) -> dict[str, Any]: ...

    # outbox: events waiting for the broker
    def pending_events(self, limit: int = 100, after_seq: int = 0) -> list[StoredEvent]: ...

    def mark_published(self, seqs: Iterable[int], at: datetime) -> None: ...

    def mark_published_soon(self, seqs: Iterable[int], at: datetime) -> int:
        """Remember that the broker acknowledged ``seqs``; written with the next commit or
        :meth:`flush_published`, whichever comes first (no fsync of their own). Until then
        they count as published. Returns how many are waiting to be written."""
        ...

    def flush_published(self) -> None:
        """Write the acknowledgements :meth:`mark_published_soon` remembered, now."""
        ...

    def unpublish(self, from_seq: int, to_seq: int) -> tuple[int, int | None]: ...

    def drop_oldest_unpublished(self, count: int) -> tuple[int, int, int] | None: ...

    def outbox_depth(self) -> int: ...

    def last_seq(self) -> int: ...

    # the local audit log
    def audit_page(
        self, *, limit: int, before_id: int | None = None, type: str | None = None
    ) -> list[AuditRecord]:
        """Up to ``limit`` audit entries, newest first, older than ``before_id``."""
        ...
