"""What a locker is made of: compartments, assignments and the states they move through.

Pure data and rules about it; no I/O. Transitions live in :mod:`locker_agent.domain.locker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

DEFAULT_SIZES: tuple[str, ...] = ("S", "M", "L", "XL")


class DoorState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    UNKNOWN = "unknown"


class CompartmentState(StrEnum):
    """What a compartment is doing, derived from its assignments and service flag."""

    FREE = "free"
    RESERVED = "reserved"
    OCCUPIED = "occupied"
    RETURN_WAITING = "return_waiting"
    EXPIRED = "expired"
    OUT_OF_SERVICE = "out_of_service"


class AssignmentKind(StrEnum):
    DELIVERY = "delivery"
    RETURN = "return"


class AssignmentStatus(StrEnum):
    # deliveries
    RESERVED = "reserved"
    DEPOSITED = "deposited"
    PICKED_UP = "picked_up"
    EXPIRED = "expired"
    RECLAIMED = "reclaimed"
    CANCELLED = "cancelled"
    # returns (DEPOSITED and CANCELLED are shared)
    ANNOUNCED = "announced"
    COLLECTED = "collected"


TERMINAL_STATUSES = frozenset(
    {
        AssignmentStatus.PICKED_UP,
        AssignmentStatus.RECLAIMED,
        AssignmentStatus.CANCELLED,
        AssignmentStatus.COLLECTED,
    }
)


class CredentialKind(StrEnum):
    PICKUP = "pickup"
    RETURN = "return"
    COURIER = "courier"


class UnlockPurpose(StrEnum):
    """Why a door is being opened; recorded with every unlock."""

    PICKUP = "pickup"
    DEPOSIT = "deposit"
    RETURN_DEPOSIT = "return_deposit"
    RETURN_COLLECT = "return_collect"
    RECLAIM = "reclaim"
    OPERATOR = "operator"


@dataclass
class Compartment:
    id: str
    size: str
    accessible: bool = False
    out_of_service_reason: str | None = None
    door: DoorState = DoorState.UNKNOWN
    assignment_ids: set[str] = field(default_factory=set)

    @property
    def in_service(self) -> bool:
        return self.out_of_service_reason is None


@dataclass
class Assignment:
    """A parcel (delivery) or a customer's return, and where it is in its lifecycle.

    Deadlines are in *service seconds* (see :class:`locker_agent.domain.clock.ServiceClock`),
    so hold periods and reservation TTLs do not run while the locker cannot serve customers.
    """

    id: str
    kind: AssignmentKind
    status: AssignmentStatus
    customer_ref: str
    size: str
    accessible: bool = False
    compartment_id: str | None = None
    barcode: str | None = None
    hold_seconds: float = 0.0
    hold_deadline: float | None = None
    reservation_deadline: float | None = None
    paused_at: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass
class Credential:
    """A code that lets someone act at the locker, kept only as a keyed hash."""

    id: str
    kind: CredentialKind
    digest: str
    assignment_ids: frozenset[str] = frozenset()
    courier_id: str | None = None
    expires_at: datetime | None = None
    single_use: bool = True
    issued_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass
class UnlockIntent:
    """A door we mean to open (or have opened) and why; completed when the door closes."""

    compartment_id: str
    purpose: UnlockPurpose
    actor: str
    assignment_ids: frozenset[str]
    requested_at: datetime
    door_opened: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class DomainEvent:
    """A fact a transition produced; the store gives it a seq and an id in the outbox."""

    type: str
    at: datetime
    compartment_id: str | None = None
    assignment_id: str | None = None
    data: dict[str, object] = field(default_factory=dict)
