"""The SQLite tables, as SQLModel classes.

The DDL that creates them lives in :mod:`locker_agent.store.migrations` (versioned); a test
checks these classes and the migrated schema agree column for column.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps as ISO 8601 text in UTC, readable from the sqlite3 shell."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class LockerRow(SQLModel, table=True):
    __tablename__ = "locker"

    id: int = Field(default=1, primary_key=True)
    locker_id: str
    service_seconds: float = 0.0
    out_of_service_reason: str | None = None
    remote_open_lockout: str | None = None
    policy_overrides: str = "{}"  # JSON object set by the cloud's set_config


class CompartmentRow(SQLModel, table=True):
    __tablename__ = "compartment"

    id: str = Field(primary_key=True)
    position: int
    size: str
    accessible: bool = False
    out_of_service_reason: str | None = None
    door: str = "unknown"


class AssignmentRow(SQLModel, table=True):
    __tablename__ = "assignment"

    id: str = Field(primary_key=True)
    kind: str
    status: str = Field(index=True)
    customer_ref: str
    size: str
    accessible: bool = False
    compartment_id: str | None = Field(default=None, foreign_key="compartment.id")
    barcode: str | None = None
    hold_seconds: float = 0.0
    hold_deadline: float | None = None
    reservation_deadline: float | None = None
    paused_at: float | None = None
    created_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CredentialRow(SQLModel, table=True):
    __tablename__ = "credential"

    id: str = Field(primary_key=True)
    kind: str
    digest: str = Field(index=True)
    courier_id: str | None = None
    single_use: bool = True
    live: bool = Field(default=True, index=True)
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CredentialAssignmentRow(SQLModel, table=True):
    __tablename__ = "credential_assignment"

    credential_id: str = Field(primary_key=True, foreign_key="credential.id")
    assignment_id: str = Field(primary_key=True, foreign_key="assignment.id")


class UnlockIntentRow(SQLModel, table=True):
    __tablename__ = "unlock_intent"

    compartment_id: str = Field(primary_key=True, foreign_key="compartment.id")
    purpose: str
    actor: str
    assignment_ids: str  # JSON list
    requested_at: datetime = Field(sa_type=UTCDateTime)
    door_opened: bool = False
    reason: str | None = None


class OutboxRow(SQLModel, table=True):
    """Events waiting for the cloud, in ``seq`` order; ``seq`` is never reused."""

    __tablename__ = "outbox"
    __table_args__ = {"sqlite_autoincrement": True}  # a seq must never be reused

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    type: str
    at: datetime = Field(sa_type=UTCDateTime)
    compartment_id: str | None = None
    assignment_id: str | None = None
    payload: str  # JSON object: the event's data
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class AuditRow(SQLModel, table=True):
    """The locker's own record of everything that happened, kept after the cloud has it."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str
    type: str = Field(index=True)
    at: datetime = Field(sa_type=UTCDateTime)
    compartment_id: str | None = None
    assignment_id: str | None = None
    payload: str


class InboxRow(SQLModel, table=True):
    """Commands seen, with the reply given: a redelivered id gets the same reply, applied once."""

    __tablename__ = "inbox"

    command_id: str = Field(primary_key=True)
    name: str
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)
    reply: str  # JSON


class UsedTokenRow(SQLModel, table=True):
    """Signed pickup tokens already used here: a replayed token is refused.

    Only a hash of the token's id is kept, and only until the token would have expired.
    """

    __tablename__ = "used_token"

    digest: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    used_at: datetime = Field(sa_type=UTCDateTime)


class CodeLockoutRow(SQLModel, table=True):
    """The wrong-code counters of one namespace of codes (no codes: counts and times only)."""

    __tablename__ = "code_lockout"

    namespace: str = Field(primary_key=True)
    state: str  # JSON: CodeLockout.snapshot()
    updated_at: datetime = Field(sa_type=UTCDateTime)


class CourierRevocationRow(SQLModel, table=True):
    """When a courier was last revoked: their signed tokens valid from before then are refused."""

    __tablename__ = "courier_revocation"

    courier_id: str = Field(primary_key=True)
    revoked_at: datetime = Field(sa_type=UTCDateTime)
