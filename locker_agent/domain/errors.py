"""Domain errors: a transition that is not allowed says why, in words a person can act on.

Each error has a stable ``code`` (used in MQTT error replies and kiosk messages) and, where one
argument is to blame, the ``field`` it came from.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownCompartment(DomainError):
    code = "unknown_compartment"


class UnknownAssignment(DomainError):
    code = "unknown_assignment"


class DuplicateAssignment(DomainError):
    code = "duplicate_assignment"


class InvalidTransition(DomainError):
    """The thing exists but is not in a state that allows this."""

    code = "invalid_state"


class LockerFull(DomainError):
    code = "locker_full"


class CompartmentUnavailable(DomainError):
    code = "compartment_unavailable"


class InvalidCode(DomainError):
    """A code that opens nothing: unknown, used, expired or revoked (``reason`` says which)."""

    code = "invalid_code"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, field="code")
        self.reason = reason


class OutOfService(DomainError):
    code = "out_of_service"


class RemoteOpenRefused(DomainError):
    """Remote opening is locked by the burst alarm, or this opening would exceed the limit."""

    code = "remote_open_refused"


class WeakCode(DomainError):
    """A code too short to stand up to guessing at the keypad (see docs/security.md)."""

    code = "weak_code"


class SessionExpired(DomainError):
    """A courier's session at the locker ended (idle too long, or signed out)."""

    code = "session_expired"


class LockedOut(DomainError):
    """Too many wrong codes: entries are refused until ``retry_after_s`` has passed."""

    code = "locked_out"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, field="code")
        self.retry_after_s = retry_after_s
