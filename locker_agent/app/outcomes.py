"""What a person at the locker is told after a code or a courier step."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WaitingParcel:
    """Something a courier can act on here (no customer data: ids, sizes and places)."""

    assignment_id: str
    kind: str
    size: str
    compartment_id: str | None
    label: str | None
    barcode: str | None


@dataclass(frozen=True)
class CourierView:
    session_id: str
    courier_id: str
    to_deposit: tuple[WaitingParcel, ...]
    returns_to_collect: tuple[WaitingParcel, ...]
    expired_to_reclaim: tuple[WaitingParcel, ...]
    open_compartments: tuple[str, ...]
    """Doors this session opened that have not closed yet."""
    idle_expires_in_s: float


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
    """The courier's session after a courier step (see :mod:`locker_agent.app.courier_desk`)."""


NOT_READY = CodeOutcome(
    False, "The locker is not ready; please try again in a minute.", reason="not_accepting"
)
"""Said to every code entered before the service has started or while it stops."""

COMPARTMENT_UNAVAILABLE = CodeOutcome(
    False, "Your compartment cannot be opened right now. Your code still works: please try "
    "again later, or call the number on the locker.", reason="compartment_unavailable",
)
"""Said to a right code whose compartment is out of service (a silent lock board, a jam)."""

STORAGE_FULL = CodeOutcome(
    False, "The locker cannot take codes right now; please try again later.",
    reason="storage_full",
)
"""Said to every code while the locker's disk is full: a wrong code's lockout could not be
kept, so no code is checked at all (docs/operations.md)."""
