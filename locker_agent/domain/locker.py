"""The locker: every transition a parcel, a return, a code or a door can go through.

Each public method checks its preconditions, changes state, and returns the events it
produced; a transition that is not allowed raises a :class:`DomainError` and changes nothing.
Nothing here does I/O: the store persists what :meth:`Locker.take_changes` reports, and the
service turns ``unlock_requested`` events into relay pulses.

A door is opened in two steps, so every opening is recorded with who and why *before* the relay
moves: ``begin_*`` records an :class:`UnlockIntent` (event ``unlock_requested``); the door
closing after it opened completes the intent (``picked_up``, ``deposited``, ...). A door that
opens with no intent is a forced door.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from locker_agent.domain.allocation import size_rank, smallest_fit
from locker_agent.domain.clock import ServiceClock
from locker_agent.domain.credentials import CodeHasher, find_matching
from locker_agent.domain.errors import (
    CompartmentUnavailable,
    DomainError,
    DuplicateAssignment,
    InvalidCode,
    InvalidTransition,
    LockerFull,
    OutOfService,
    RemoteOpenRefused,
    UnknownAssignment,
    UnknownCompartment,
    WeakCode,
)
from locker_agent.domain.model import (
    DEFAULT_SIZES,
    Assignment,
    AssignmentKind,
    AssignmentStatus,
    Compartment,
    CompartmentState,
    Credential,
    CredentialKind,
    DomainEvent,
    DoorState,
    UnlockIntent,
    UnlockPurpose,
)

ArchiveLookup = Callable[[str], AssignmentStatus | None]
"""Where a finished assignment's final status can be found once it left memory."""
CodeArchive = Callable[[str], str | None]
"""Why a code (by digest) that left memory no longer works: "used", "expired" or "revoked"."""

S = AssignmentStatus

MAX_WAITING_PARCELS = 500
"""Default for parcels announced with hold_compartment false and not yet brought."""
MIN_CODE_LENGTH = 8
"""Shortest pickup, return or courier code accepted by default: with the lockout's locker-wide
rate, 8 digits keep the expected time to guess any code of a full locker above a year
(docs/security.md shows the arithmetic)."""


@dataclass
class Changes:
    """Objects touched since the last :meth:`Locker.take_changes`, for the store to write."""

    compartments: dict[str, Compartment] = field(default_factory=dict)
    assignments: dict[str, Assignment] = field(default_factory=dict)
    credentials: dict[str, Credential] = field(default_factory=dict)
    intents: dict[str, UnlockIntent | None] = field(default_factory=dict)
    locker: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.compartments or self.assignments or self.credentials or self.intents
            or self.locker
        )


def _no_archive(_: str) -> AssignmentStatus | None:
    return None


def _no_code_archive(_: str) -> str | None:
    return None


class Locker:
    def __init__(
        self,
        locker_id: str,
        compartments: Iterable[Compartment],
        hasher: CodeHasher,
        *,
        sizes: Sequence[str] = DEFAULT_SIZES,
        clock: ServiceClock | None = None,
        out_of_service_reason: str | None = None,
        remote_open_lockout: str | None = None,
        assignments: Iterable[Assignment] = (),
        credentials: Iterable[Credential] = (),
        intents: Iterable[UnlockIntent] = (),
        archive: ArchiveLookup = _no_archive,
        code_archive: CodeArchive = _no_code_archive,
        min_code_length: int = MIN_CODE_LENGTH,
    ) -> None:
        self.locker_id = locker_id
        self.sizes = tuple(sizes)
        self.compartments = {c.id: c for c in compartments}
        self.assignments = {a.id: a for a in assignments}
        self.credentials = {c.id: c for c in credentials}
        self.intents = {i.compartment_id: i for i in intents}
        self.clock = clock or ServiceClock()
        self.out_of_service_reason = out_of_service_reason
        self.remote_open_lockout = remote_open_lockout
        self._hasher = hasher
        self._archive = archive
        self._code_archive = code_archive
        self.min_code_length = min_code_length
        self.max_waiting_parcels = MAX_WAITING_PARCELS
        """Parcels known without a compartment held for them, at most: each costs memory."""
        self.code_collisions = 0
        """New codes that matched another live code, since start (memory only). The command
        is accepted without a word (refusing it would tell the sender that someone's code is
        live: an oracle), the new code is not registered and the live one it matched is
        withdrawn too, so neither customer can open the other's door; counting lets the
        caller raise an alarm. The cloud knows every code it gave, so this is a bug or an
        attack, never normal."""
        self._changes = Changes()

    # ------------------------------------------------------------------ queries

    @property
    def in_service(self) -> bool:
        return self.out_of_service_reason is None

    def state_of(self, compartment_id: str) -> CompartmentState:
        compartment = self._compartment(compartment_id)
        if not compartment.in_service:
            return CompartmentState.OUT_OF_SERVICE
        held = [self.assignments[a] for a in compartment.assignment_ids]
        if any(a.kind is AssignmentKind.DELIVERY and a.status is S.DEPOSITED for a in held):
            return CompartmentState.OCCUPIED
        if any(a.status is S.EXPIRED for a in held):
            return CompartmentState.EXPIRED
        if any(a.kind is AssignmentKind.RETURN and a.status is S.DEPOSITED for a in held):
            return CompartmentState.RETURN_WAITING
        if held:
            return CompartmentState.RESERVED
        return CompartmentState.FREE

    def counts(self) -> dict[CompartmentState, int]:
        counts = dict.fromkeys(CompartmentState, 0)
        for compartment_id in self.compartments:
            counts[self.state_of(compartment_id)] += 1
        return counts

    def free_by_size(self) -> dict[str, int]:
        free = dict.fromkeys(self.sizes, 0)
        for compartment in self._free_compartments():
            free[compartment.size] += 1
        return free

    def customers_in(self, compartment_id: str) -> set[str]:
        compartment = self._compartment(compartment_id)
        return {self.assignments[a].customer_ref for a in compartment.assignment_ids}

    @property
    def has_changes(self) -> bool:
        """Whether anything was touched since the last :meth:`take_changes`."""
        return bool(self._changes)

    def take_changes(self) -> Changes:
        """Hand the store everything touched since the last call, and forget finished work."""
        changes, self._changes = self._changes, Changes()
        for assignment_id, assignment in changes.assignments.items():
            if assignment.terminal:
                self.assignments.pop(assignment_id, None)
        for credential_id, credential in changes.credentials.items():
            if not self._credential_alive(credential):
                self.credentials.pop(credential_id, None)
        return changes

    # ----------------------------------------------------- deliveries (cloud side)

    def reserve(
        self,
        assignment_id: str,
        *,
        pickup_code: str,
        now: datetime,
        hold_seconds: float,
        reservation_ttl_s: float,
        size: str | None = None,
        compartment_id: str | None = None,
        accessible: bool = False,
        customer_ref: str | None = None,
        barcode: str | None = None,
        hold_compartment: bool = True,
    ) -> list[DomainEvent]:
        """Reserve a compartment for a delivery and register its pickup code.

        With no ``compartment_id`` the smallest free compartment that fits is chosen. An
        explicit compartment may already hold parcels of the *same* customer (several parcels
        in one compartment, as InPost does), never of another. With ``hold_compartment`` off
        the parcel is only made known: no compartment is held for it, and the smallest free
        one that fits opens when the courier arrives with it.
        """
        self._require_new_assignment(assignment_id)
        self._require_strong_code(pickup_code, "pickup_code")
        if barcode is not None and any(
            a.barcode == barcode and not a.terminal for a in self.assignments.values()
        ):
            raise DuplicateAssignment(
                f"barcode {barcode!r} already belongs to another parcel here", field="barcode"
            )
        self._require_positive(hold_seconds, "hold_period")
        self._require_positive(reservation_ttl_s, "reservation_ttl")
        customer = customer_ref or _solo_customer()
        if size is not None:
            self._require_size(size)
        compartment: Compartment | None = None
        if hold_compartment or compartment_id is not None:
            compartment = self._choose_compartment(
                size=size, compartment_id=compartment_id, accessible=accessible,
                customer=customer,
            )
        elif size is None:
            raise DomainError("say which size the parcel needs", field="size")
        else:
            self._require_room_on_the_waiting_list()
        digest = self._hasher.digest(CredentialKind.PICKUP, pickup_code)
        credential, collided = self._credential_for_new_parcel(digest, customer, now)

        assignment = Assignment(
            id=assignment_id,
            kind=AssignmentKind.DELIVERY,
            status=S.RESERVED,
            customer_ref=customer,
            size=size or (compartment.size if compartment else ""),
            accessible=accessible,
            compartment_id=compartment.id if compartment else None,
            barcode=barcode,
            hold_seconds=hold_seconds,
            reservation_deadline=self.clock.deadline(reservation_ttl_s),
            created_at=now,
            updated_at=now,
        )
        self.assignments[assignment.id] = assignment
        if collided:
            self._touch(assignment)
        else:
            if credential is None:
                credential = self._new_credential(CredentialKind.PICKUP, digest, now)
            credential.assignment_ids = credential.assignment_ids | {assignment.id}
            self._touch(assignment, credential)
        if compartment is None:
            return [
                self._event(
                    "reserved", now, None, assignment.id, size=assignment.size,
                    compartment_held=False,
                )
            ]
        compartment.assignment_ids.add(assignment.id)
        self._touch(compartment)
        return [
            self._event(
                "reserved",
                now,
                compartment.id,
                assignment.id,
                size=assignment.size,
                shared=len(compartment.assignment_ids) > 1,
            )
        ]

    def cancel(self, assignment_id: str, *, reason: str, now: datetime) -> list[DomainEvent]:
        """Cancel a parcel or return. A parcel already inside expires, awaiting reclaim."""
        assignment = self._assignment(assignment_id)
        self._require_no_intent(assignment)
        if assignment.status in (S.RESERVED, S.ANNOUNCED):
            return self._finish(assignment, S.CANCELLED, now, "cancelled", reason=reason)
        if assignment.kind is AssignmentKind.DELIVERY and assignment.status is S.DEPOSITED:
            return self._set_status(assignment, S.EXPIRED, now, "expired", reason=reason)
        raise InvalidTransition(
            f"assignment {assignment_id} is {assignment.status.value} and cannot be cancelled",
            field="assignment_id",
        )

    def extend(self, assignment_id: str, *, seconds: float, now: datetime) -> list[DomainEvent]:
        """Lengthen the hold period of a parcel not yet collected."""
        self._require_positive(seconds, "seconds")
        assignment = self._assignment(assignment_id)
        if assignment.kind is not AssignmentKind.DELIVERY or assignment.status not in (
            S.RESERVED,
            S.DEPOSITED,
        ):
            raise InvalidTransition(
                f"assignment {assignment_id} is {assignment.status.value}; "
                "only a reserved or deposited parcel can be extended",
                field="assignment_id",
            )
        assignment.hold_seconds += seconds
        if assignment.hold_deadline is not None:
            assignment.hold_deadline += seconds
        assignment.updated_at = now
        self._touch(assignment)
        return [
            self._event(
                "extended", now, assignment.compartment_id, assignment.id, seconds=seconds
            )
        ]

    # ------------------------------------------------------------------ returns

    def announce_return(
        self,
        assignment_id: str,
        *,
        size: str,
        return_code: str,
        now: datetime,
        ttl_s: float,
        customer_ref: str | None = None,
    ) -> list[DomainEvent]:
        """Expect a customer's return: their code will open a free compartment of ``size``."""
        self._require_new_assignment(assignment_id)
        self._require_strong_code(return_code, "return_code")
        self._require_size(size)
        self._require_positive(ttl_s, "ttl")
        digest = self._hasher.digest(CredentialKind.RETURN, return_code)
        collided = self._withdraw_colliding(self._live_matches(CredentialKind.RETURN, digest), now)
        assignment = Assignment(
            id=assignment_id,
            kind=AssignmentKind.RETURN,
            status=S.ANNOUNCED,
            customer_ref=customer_ref or _solo_customer(),
            size=size,
            reservation_deadline=self.clock.deadline(ttl_s),
            created_at=now,
            updated_at=now,
        )
        self.assignments[assignment.id] = assignment
        if collided:
            self._touch(assignment)
        else:
            credential = self._new_credential(CredentialKind.RETURN, digest, now)
            credential.assignment_ids = frozenset({assignment.id})
            self._touch(assignment, credential)
        return [self._event("return_announced", now, None, assignment.id, size=size)]

    # ------------------------------------------------------------------- couriers

    def grant_courier(
        self, courier_id: str, *, code: str, expires_at: datetime | None, now: datetime
    ) -> list[DomainEvent]:
        """Let a courier in with ``code`` until ``expires_at`` (replacing any earlier code)."""
        if not courier_id:
            raise DomainError("courier id must not be empty", field="courier_id")
        if expires_at is not None and expires_at <= now:
            raise DomainError("the courier code would already be expired", field="expires_at")
        self._require_strong_code(code, "code")
        digest = self._hasher.digest(CredentialKind.COURIER, code)
        clash = [
            c for c in self._live_matches(CredentialKind.COURIER, digest, now)
            if c.courier_id != courier_id
        ]
        self._revoke_courier_codes(courier_id, now)
        if self._withdraw_colliding(clash, now):
            return [self._event("courier_granted", now, courier_id=courier_id)]
        credential = self._new_credential(CredentialKind.COURIER, digest, now)
        credential.courier_id = courier_id
        credential.expires_at = expires_at
        credential.single_use = False
        self._touch(credential)
        return [self._event("courier_granted", now, courier_id=courier_id)]

    def revoke_courier(self, courier_id: str, *, now: datetime) -> list[DomainEvent]:
        """Take a courier's codes away; also valid for one with none (signed tokens only).

        The ``courier_revoked`` event is what stops their signed tokens too (see
        :class:`locker_agent.app.courier_desk.CourierDesk`), so it is always produced.
        """
        if not courier_id:
            raise DomainError("courier id must not be empty", field="courier_id")
        codes = self._revoke_courier_codes(courier_id, now)
        return [self._event("courier_revoked", now, courier_id=courier_id, codes=codes)]

    def revoke_codes(self, assignment_id: str, *, now: datetime) -> list[DomainEvent]:
        """Stop every code that would open this assignment's compartment."""
        assignment = self._assignment(assignment_id)
        revoked = 0
        for credential in list(self.credentials.values()):
            if assignment.id in credential.assignment_ids and credential.revoked_at is None:
                credential.revoked_at = now
                self._touch(credential)
                revoked += 1
        if not revoked:
            raise DomainError(f"assignment {assignment_id} has no live code", field="assignment_id")
        return [self._event("code_revoked", now, assignment.compartment_id, assignment.id)]

    # --------------------------------------------------------------- using codes

    def authenticate(
        self, code: str, *, now: datetime, kinds: Iterable[CredentialKind] = tuple(CredentialKind)
    ) -> Credential:
        """The live credential ``code`` stands for, or :class:`InvalidCode` saying why not."""
        dead_reason: str | None = None
        for kind in kinds:
            digest = self._hasher.digest(kind, code)
            for credential in find_matching(self.credentials.values(), digest):
                reason = self._why_unusable(credential, now)
                if reason is None:
                    return credential
                dead_reason = dead_reason or reason
            dead_reason = dead_reason or self._code_archive(digest)
        reason = dead_reason or "unknown"
        raise InvalidCode(_CODE_MESSAGES.get(reason, _CODE_MESSAGES["unknown"]), reason=reason)

    def begin_pickup(
        self, credential: Credential, *, now: datetime, source: str | None = None
    ) -> list[DomainEvent]:
        """Open every compartment holding a deposited parcel under this pickup code."""
        self._require_in_service()
        self._require_kind(credential, CredentialKind.PICKUP)
        reason = self._why_unusable(credential, now)
        if reason is not None:
            raise InvalidCode("This code cannot be used now.", reason=reason)
        by_compartment: dict[str, set[str]] = {}
        for assignment_id in credential.assignment_ids:
            assignment = self.assignments.get(assignment_id)
            if assignment and assignment.status is S.DEPOSITED and assignment.compartment_id:
                by_compartment.setdefault(assignment.compartment_id, set()).add(assignment_id)
        if not by_compartment:
            raise InvalidCode("There is nothing to collect with this code.", reason="used")
        for compartment_id in by_compartment:
            self._require_openable(compartment_id)
        events = [
            self._begin(cid, UnlockPurpose.PICKUP, "customer", ids, now, source=source)
            for cid, ids in sorted(by_compartment.items())
        ]
        credential.used_at = now
        self._touch(credential)
        return events

    def begin_remote_pickup(
        self, assignment_id: str, *, actor: str, now: datetime
    ) -> list[DomainEvent]:
        """The customer pressed "open" in the app: open this parcel's compartment, no other."""
        self._require_remote_open_allowed()
        return self._begin_assignment_pickup(
            assignment_id, actor=actor, now=now, reason="remote_pickup", source="cloud"
        )

    def begin_token_pickup(
        self, assignment_id: str, *, now: datetime, source: str | None = None
    ) -> list[DomainEvent]:
        """A verified signed pickup token for this parcel was shown at the locker.

        It opens only while the parcel also has a live pickup code: ``revoke_code`` stops the
        token as it stops the code.
        """
        if assignment_id in self.assignments and not any(
            c.kind is CredentialKind.PICKUP and assignment_id in c.assignment_ids
            and c.revoked_at is None
            for c in self.credentials.values()
        ):
            raise InvalidCode(_CODE_MESSAGES["revoked"], reason="revoked")
        try:
            return self._begin_assignment_pickup(
                assignment_id, actor="customer", now=now, reason="signed_token", source=source
            )
        except (UnknownAssignment, InvalidTransition) as exc:
            status = self.assignments.get(assignment_id)
            reason = {S.EXPIRED: "expired", S.RESERVED: "not_ready"}.get(
                status.status if status else S.PICKED_UP, "used"
            )
            raise InvalidCode(_CODE_MESSAGES[reason], reason=reason) from exc

    def begin_deposit(
        self, assignment_id: str, *, actor: str, now: datetime, source: str | None = None
    ) -> list[DomainEvent]:
        """Open a reserved parcel's compartment for the courier to put it in.

        A parcel with no compartment held for it gets the smallest free one that fits.
        """
        self._require_in_service()
        assignment = self._assignment(assignment_id)
        if assignment.kind is not AssignmentKind.DELIVERY or assignment.status is not S.RESERVED:
            raise InvalidTransition(
                f"assignment {assignment_id} is {assignment.status.value}, not reserved",
                field="assignment_id",
            )
        if assignment.compartment_id is None:
            self._place(assignment, size=assignment.size)
        assert assignment.compartment_id is not None
        self._require_openable(assignment.compartment_id)
        return [
            self._begin(
                assignment.compartment_id, UnlockPurpose.DEPOSIT, actor, {assignment.id}, now,
                source=source,
            )
        ]

    def redirect_deposit(
        self, compartment_id: str, *, problem: str, actor: str, now: datetime,
        source: str | None = None,
    ) -> list[DomainEvent]:
        """The courier at an open deposit door says the parcel does not fit, or the door is broken.

        ``doesnt_fit``: the next size up opens and the first compartment is freed.
        ``door_broken``: the compartment goes out of service and the next one that fits opens.
        If nothing suitable is free, the parcel keeps no compartment (the courier takes it
        back; it can be brought again while its reservation lasts).
        """
        if problem not in ("doesnt_fit", "door_broken"):
            raise DomainError(
                f"unknown problem {problem!r}: say doesnt_fit or door_broken", field="problem"
            )
        self._require_in_service()
        compartment = self._compartment(compartment_id)
        intent = self.intents.get(compartment_id)
        waiting = [
            a for i in sorted(intent.assignment_ids if intent else ())
            if (a := self.assignments.get(i)) is not None and a.status is S.RESERVED
        ]
        if intent is None or intent.purpose is not UnlockPurpose.DEPOSIT or len(waiting) != 1:
            raise InvalidTransition(
                f"compartment {compartment_id} is not open for one parcel's deposit",
                field="compartment_id",
            )
        (assignment,) = waiting
        events: list[DomainEvent] = []
        # The first door no longer deposits anything when it closes. Its unlock stays on
        # record (not dropped) so a door that opens late is not taken for a forced one.
        intent.assignment_ids = frozenset()
        self._changes.intents[compartment_id] = intent
        self._release_compartment(assignment)
        if problem == "door_broken":
            events += self.set_compartment_service(
                compartment_id, in_service=False, reason="courier reported the door broken",
                now=now,
            )
            wanted = assignment.size
        else:
            larger = [s for s in self.sizes if size_rank(self.sizes, s) > size_rank(
                self.sizes, compartment.size)]
            wanted = larger[0] if larger else ""
        target = None
        if wanted:
            target = smallest_fit(
                self._free_compartments(), self.sizes, wanted, accessible=assignment.accessible
            )
        events.append(
            self._event(
                "deposit_redirected", now, compartment_id, assignment.id, problem=problem,
                to=target.id if target else None, actor=actor,
            )
        )
        if target is None:
            return events
        assignment.compartment_id = target.id
        target.assignment_ids.add(assignment.id)
        if problem == "doesnt_fit":
            assignment.size = target.size
        self._touch(assignment, target)
        events.append(
            self._begin(target.id, UnlockPurpose.DEPOSIT, actor, {assignment.id}, now,
                        source=source)
        )
        return events

    def begin_return_deposit(
        self, credential: Credential, *, now: datetime, source: str | None = None
    ) -> list[DomainEvent]:
        """Open a free compartment of the announced size for a customer's return."""
        self._require_in_service()
        self._require_kind(credential, CredentialKind.RETURN)
        reason = self._why_unusable(credential, now)
        if reason is not None:
            raise InvalidCode("This code cannot be used now.", reason=reason)
        (assignment_id,) = credential.assignment_ids
        assignment = self._assignment(assignment_id)
        if assignment.compartment_id is None:
            self._place(assignment, size=assignment.size)
        assert assignment.compartment_id is not None
        self._require_openable(assignment.compartment_id)
        credential.used_at = now
        self._touch(credential)
        return [
            self._begin(
                assignment.compartment_id,
                UnlockPurpose.RETURN_DEPOSIT,
                "customer",
                {assignment.id},
                now,
                source=source,
            )
        ]

    def begin_collect_return(
        self, compartment_id: str, *, actor: str, now: datetime, source: str | None = None
    ) -> list[DomainEvent]:
        return self._begin_courier_removal(
            compartment_id, S.DEPOSITED, AssignmentKind.RETURN, UnlockPurpose.RETURN_COLLECT,
            actor, now, source,
        )

    def begin_reclaim(
        self, compartment_id: str, *, actor: str, now: datetime, source: str | None = None
    ) -> list[DomainEvent]:
        return self._begin_courier_removal(
            compartment_id, S.EXPIRED, AssignmentKind.DELIVERY, UnlockPurpose.RECLAIM, actor,
            now, source,
        )

    def collectable(self, assignment_id: str) -> bool:
        """Is this parcel inside, waiting for its customer, with its door not open now?"""
        assignment = self.assignments.get(assignment_id)
        return (
            assignment is not None and assignment.status is S.DEPOSITED
            and assignment.compartment_id not in self.intents
        )

    # ----------------------------------------------------------- courier's view

    def awaiting_deposit(self) -> list[Assignment]:
        """Deliveries announced or reserved here that no courier has brought yet."""
        return self._sorted(
            a for a in self.assignments.values()
            if a.kind is AssignmentKind.DELIVERY and a.status is S.RESERVED
        )

    def returns_to_collect(self) -> list[Assignment]:
        return self._sorted(
            a for a in self.assignments.values()
            if a.kind is AssignmentKind.RETURN and a.status is S.DEPOSITED
        )

    def expired_to_reclaim(self) -> list[Assignment]:
        """Expired parcels whose compartment holds no parcel a customer may still collect."""
        return self._sorted(
            a for a in self.assignments.values()
            if a.kind is AssignmentKind.DELIVERY and a.status is S.EXPIRED
            and not self._holds_collectable(a.compartment_id)
        )

    def find_parcel(self, reference: str) -> Assignment:
        """The delivery waiting for a courier under this barcode or assignment id."""
        matches = [
            a for a in self.assignments.values()
            if a.kind is AssignmentKind.DELIVERY and a.status is S.RESERVED
            and reference in (a.barcode, a.id)
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise InvalidTransition(
                f"{reference!r} matches several parcels; scan another label or type the "
                "assignment id", field="parcel",
            )
        raise UnknownAssignment(f"no parcel {reference!r} is expected here", field="parcel")

    def begin_operator_open(
        self, compartment_id: str, *, actor: str, reason: str, now: datetime, remote: bool = False,
        source: str | None = None,
    ) -> list[DomainEvent]:
        """An operator opens one compartment; it changes no parcel's state."""
        if not reason:
            raise DomainError("an operator opening needs a reason", field="reason")
        if remote:
            self._require_remote_open_allowed()
        self._require_openable(compartment_id, allow_out_of_service=True)
        return [
            self._begin(compartment_id, UnlockPurpose.OPERATOR, actor, set(), now, reason=reason,
                        source=source or ("cloud" if remote else None))
        ]

    def record_pulse(
        self, compartment_id: str, *, now: datetime, intent: UnlockIntent | None = None
    ) -> list[DomainEvent]:
        """The relay has been pulsed for ``intent`` (by default: the unlock now pending).

        Reported even if that door already opened and closed in the meantime.
        """
        self._compartment(compartment_id)
        intent = intent or self.intents.get(compartment_id)
        return [
            self._event(
                "unlock_pulsed",
                now,
                compartment_id,
                purpose=intent.purpose.value if intent else None,
                actor=intent.actor if intent else None,
            )
        ]

    def abandon_unlock(
        self, compartment_id: str, *, reason: str, now: datetime, error: str | None = None
    ) -> list[DomainEvent]:
        """The door never opened (jam, failed pulse): drop the intent, keep parcels as they were.

        ``error`` is what the lock hardware said, when it failed.

        The customer's code keeps working: their parcel is still inside (or, for a return, the
        compartment chosen for it is let go and the return waits as announced).
        """
        intent = self._intent(compartment_id)
        if intent.door_opened:
            raise InvalidTransition(
                f"the door of compartment {compartment_id} has opened; it completes on closing"
            )
        del self.intents[compartment_id]
        self._changes.intents[compartment_id] = None
        if intent.purpose is UnlockPurpose.RETURN_DEPOSIT:
            for assignment_id in intent.assignment_ids:
                assignment = self.assignments[assignment_id]
                if assignment.status is S.ANNOUNCED:
                    self._release_compartment(assignment)
        detail = {"error": error} if error else {}
        return [
            self._event(
                "unlock_abandoned", now, compartment_id,
                purpose=intent.purpose.value, actor=intent.actor, reason=reason, **detail,
            )
        ]

    # ---------------------------------------------------------------------- doors

    def door_changed(
        self, compartment_id: str, door: DoorState, *, now: datetime
    ) -> list[DomainEvent]:
        """A door sensor reported ``door``; completes an unlock when its door closes."""
        compartment = self._compartment(compartment_id)
        previous = compartment.door
        if door is previous:
            return []
        compartment.door = door
        self._touch(compartment)
        intent = self.intents.get(compartment_id)
        if door is DoorState.OPEN:
            if intent is not None:
                intent.door_opened = True
                self._changes.intents[compartment_id] = intent
                return [
                    self._event(
                        "door_opened", now, compartment_id,
                        purpose=intent.purpose.value, actor=intent.actor,
                    )
                ]
            if previous is DoorState.CLOSED:
                return [self._event("door_forced", now, compartment_id)]
            return [self._event("door_opened", now, compartment_id, purpose=None, actor=None)]
        if door is DoorState.CLOSED:
            if previous is DoorState.UNKNOWN and (intent is None or not intent.door_opened):
                return []  # first reading after start-up: nothing happened
            events = [self._event("door_closed", now, compartment_id)]
            if intent is not None and intent.door_opened:
                events += self._complete(intent, now)
            return events
        return [self._event("door_unknown", now, compartment_id)]

    # -------------------------------------------------------------------- service

    def set_compartment_service(
        self, compartment_id: str, *, in_service: bool, reason: str | None, now: datetime
    ) -> list[DomainEvent]:
        """Take one compartment out of service (its parcels' hold periods pause) or back."""
        compartment = self._compartment(compartment_id)
        if not in_service and not compartment.in_service and reason:
            # Another fault while already out: it is added to the reasons, so the end of an
            # earlier one (a lock board answering again) cannot bring this one back in.
            reasons = _reasons(compartment.out_of_service_reason)
            if reason in reasons:
                return []
            compartment.out_of_service_reason = _REASON_SEPARATOR.join([*reasons, reason])
            self._touch(compartment)
            return [self._event("out_of_service", now, compartment_id, reason=reason)]
        if in_service == compartment.in_service:
            return []
        if in_service:
            compartment.out_of_service_reason = None
            self._resume_holds(compartment, now)
            self._touch(compartment)
            return [self._event("back_in_service", now, compartment_id)]
        if not reason:
            raise DomainError("taking a compartment out of service needs a reason", field="reason")
        compartment.out_of_service_reason = reason
        self._pause_holds(compartment, now)
        self._touch(compartment)
        return [self._event("out_of_service", now, compartment_id, reason=reason)]

    def lift_out_of_service_reason(
        self, compartment_id: str, *, reason: str, now: datetime
    ) -> list[DomainEvent]:
        """One reason a compartment was out has ended; it is back only if it was the last."""
        compartment = self._compartment(compartment_id)
        reasons = _reasons(compartment.out_of_service_reason)
        if reason not in reasons:
            return []
        remaining = [r for r in reasons if r != reason]
        if not remaining:
            return self.set_compartment_service(
                compartment_id, in_service=True, reason=None, now=now
            )
        compartment.out_of_service_reason = _REASON_SEPARATOR.join(remaining)
        self._touch(compartment)
        return []

    def set_locker_service(
        self, *, in_service: bool, reason: str | None, now: datetime
    ) -> list[DomainEvent]:
        """The whole locker in or out of service; the service clock stops while it is out."""
        if in_service == self.in_service:
            return []
        if not in_service and not reason:
            raise DomainError("taking the locker out of service needs a reason", field="reason")
        self.out_of_service_reason = None if in_service else reason
        self._changes.locker = True
        if in_service:
            return [self._event("back_in_service", now)]
        return [self._event("out_of_service", now, reason=reason)]

    def trip_remote_open_alarm(self, *, reason: str, now: datetime) -> list[DomainEvent]:
        """Refuse every remote opening from now on, until an operator clears the alarm."""
        if self.remote_open_lockout is not None:
            return []
        self.remote_open_lockout = reason
        self._changes.locker = True
        return [self._event("remote_open_alarm", now, reason=reason)]

    def clear_remote_open_alarm(
        self, *, operator: str, reason: str, now: datetime
    ) -> list[DomainEvent]:
        if self.remote_open_lockout is None:
            raise InvalidTransition("there is no remote-open alarm to clear")
        self.remote_open_lockout = None
        self._changes.locker = True
        return [
            self._event("remote_open_alarm_cleared", now, operator=operator, reason=reason)
        ]

    def tick(self, elapsed: float, *, now: datetime) -> list[DomainEvent]:
        """Let ``elapsed`` seconds pass: expire parcels and lapse reservations that are due."""
        self.clock.advance(elapsed, in_service=self.in_service)
        events: list[DomainEvent] = []
        for assignment in list(self.assignments.values()):
            if assignment.compartment_id in self.intents:
                continue  # someone is at the door right now; let them finish
            if (
                assignment.status is S.DEPOSITED
                and assignment.kind is AssignmentKind.DELIVERY
                and assignment.hold_deadline is not None
                and assignment.paused_at is None
                and self.clock.is_past(assignment.hold_deadline)
            ):
                events += self._set_status(assignment, S.EXPIRED, now, "expired", reason="hold")
            elif (
                assignment.status in (S.RESERVED, S.ANNOUNCED)
                and assignment.reservation_deadline is not None
                and self.clock.is_past(assignment.reservation_deadline)
            ):
                events += self._finish(
                    assignment, S.CANCELLED, now, "reservation_lapsed", reason="ttl"
                )
        return events

    # ------------------------------------------------------------------ internals

    def _complete(self, intent: UnlockIntent, now: datetime) -> list[DomainEvent]:
        del self.intents[intent.compartment_id]
        self._changes.intents[intent.compartment_id] = None
        outcome = {
            UnlockPurpose.PICKUP: (S.DEPOSITED, S.PICKED_UP, "picked_up"),
            UnlockPurpose.DEPOSIT: (S.RESERVED, S.DEPOSITED, "deposited"),
            UnlockPurpose.RETURN_DEPOSIT: (S.ANNOUNCED, S.DEPOSITED, "return_deposited"),
            UnlockPurpose.RETURN_COLLECT: (S.DEPOSITED, S.COLLECTED, "return_collected"),
            UnlockPurpose.RECLAIM: (S.EXPIRED, S.RECLAIMED, "reclaimed"),
        }.get(intent.purpose)
        if outcome is None:
            return []
        before, after, event_type = outcome
        events: list[DomainEvent] = []
        for assignment_id in sorted(intent.assignment_ids):
            assignment = self.assignments.get(assignment_id)
            if assignment is None or assignment.status is not before:
                continue  # cancelled or expired while the door was open: nothing to move
            if after in (S.PICKED_UP, S.COLLECTED, S.RECLAIMED):
                events += self._finish(assignment, after, now, event_type, actor=intent.actor)
            else:
                if after is S.DEPOSITED and assignment.kind is AssignmentKind.DELIVERY:
                    assignment.hold_deadline = self.clock.deadline(assignment.hold_seconds)
                    assignment.reservation_deadline = None
                    if not self.compartments[intent.compartment_id].in_service:
                        # taken out of service while the courier had the door open: the
                        # customer cannot get at it, so its hold waits like the others'
                        assignment.paused_at = self.clock.seconds
                events += self._set_status(assignment, after, now, event_type, actor=intent.actor)
        return events

    def _begin(
        self,
        compartment_id: str,
        purpose: UnlockPurpose,
        actor: str,
        assignment_ids: set[str],
        now: datetime,
        *,
        reason: str | None = None,
        source: str | None = None,
    ) -> DomainEvent:
        """Record the intent to open a door: who, why, for which parcels, through which input."""
        intent = UnlockIntent(
            compartment_id=compartment_id,
            purpose=purpose,
            actor=actor,
            assignment_ids=frozenset(assignment_ids),
            requested_at=now,
            reason=reason,
            # a door already standing open will not open again: its closing completes this
            door_opened=self.compartments[compartment_id].door is DoorState.OPEN,
        )
        self.intents[compartment_id] = intent
        self._changes.intents[compartment_id] = intent
        return self._event(
            "unlock_requested",
            now,
            compartment_id,
            purpose=purpose.value,
            actor=actor,
            reason=reason,
            source=source,
            assignment_ids=sorted(assignment_ids),
        )

    def _begin_courier_removal(
        self,
        compartment_id: str,
        status: AssignmentStatus,
        kind: AssignmentKind,
        purpose: UnlockPurpose,
        actor: str,
        now: datetime,
        source: str | None = None,
    ) -> list[DomainEvent]:
        compartment = self._compartment(compartment_id)
        ids = {
            a for a in compartment.assignment_ids
            if self.assignments[a].status is status and self.assignments[a].kind is kind
        }
        if purpose is UnlockPurpose.RECLAIM and self._holds_collectable(compartment_id):
            raise InvalidTransition(
                f"compartment {compartment_id} also holds a parcel its customer may still "
                "collect; it is reclaimed when that one expires too",
                field="compartment_id",
            )
        if not ids:
            raise InvalidTransition(
                f"compartment {compartment_id} holds nothing to {purpose.value.replace('_', ' ')}",
                field="compartment_id",
            )
        self._require_openable(compartment_id, allow_out_of_service=True)
        return [self._begin(compartment_id, purpose, actor, ids, now, source=source)]

    def _set_status(
        self,
        assignment: Assignment,
        status: AssignmentStatus,
        now: datetime,
        event_type: str,
        **data: object,
    ) -> list[DomainEvent]:
        assignment.status = status
        assignment.updated_at = now
        self._touch(assignment)
        if assignment.compartment_id:
            self._touch(self.compartments[assignment.compartment_id])
        return [self._event(event_type, now, assignment.compartment_id, assignment.id, **data)]

    def _finish(
        self,
        assignment: Assignment,
        status: AssignmentStatus,
        now: datetime,
        event_type: str,
        **data: object,
    ) -> list[DomainEvent]:
        """Move an assignment to a terminal status and let go of its compartment."""
        compartment_id = assignment.compartment_id
        events = self._set_status(assignment, status, now, event_type, **data)
        if compartment_id:
            compartment = self.compartments[compartment_id]
            compartment.assignment_ids.discard(assignment.id)
            self._touch(compartment)
        for credential in self.credentials.values():
            if assignment.id in credential.assignment_ids:
                self._touch(credential)
        return events

    def _place(self, assignment: Assignment, *, size: str) -> None:
        """Give an assignment the smallest free compartment of ``size`` or larger."""
        compartment = smallest_fit(
            self._free_compartments(), self.sizes, size, accessible=assignment.accessible
        )
        if compartment is None:
            raise LockerFull(f"no free compartment of size {size} or larger", field="size")
        assignment.compartment_id = compartment.id
        compartment.assignment_ids.add(assignment.id)
        self._touch(assignment, compartment)

    def _begin_assignment_pickup(
        self, assignment_id: str, *, actor: str, now: datetime, reason: str, source: str | None
    ) -> list[DomainEvent]:
        """Open one deposited parcel's compartment (with that customer's other parcels in it)."""
        self._require_in_service()
        assignment = self._assignment(assignment_id)
        if assignment.kind is not AssignmentKind.DELIVERY or assignment.status is not S.DEPOSITED:
            raise InvalidTransition(
                f"assignment {assignment_id} is {assignment.status.value}, not deposited",
                field="assignment_id",
            )
        assert assignment.compartment_id is not None
        self._require_openable(assignment.compartment_id)
        ids = {
            a for a in self.compartments[assignment.compartment_id].assignment_ids
            if self.assignments[a].status is S.DEPOSITED
            and self.assignments[a].customer_ref == assignment.customer_ref
        }
        return [
            self._begin(assignment.compartment_id, UnlockPurpose.PICKUP, actor, ids, now,
                        reason=reason, source=source)
        ]

    def _holds_collectable(self, compartment_id: str | None) -> bool:
        compartment = self.compartments.get(compartment_id or "")
        return compartment is not None and any(
            self.assignments[a].status is S.DEPOSITED
            and self.assignments[a].kind is AssignmentKind.DELIVERY
            for a in compartment.assignment_ids
        )

    @staticmethod
    def _sorted(assignments: Iterable[Assignment]) -> list[Assignment]:
        return sorted(assignments, key=lambda a: (a.compartment_id or "", a.id))

    def _release_compartment(self, assignment: Assignment) -> None:
        if assignment.compartment_id:
            compartment = self.compartments[assignment.compartment_id]
            compartment.assignment_ids.discard(assignment.id)
            assignment.compartment_id = None
            self._touch(compartment, assignment)

    def _pause_holds(self, compartment: Compartment, now: datetime) -> None:
        for assignment_id in compartment.assignment_ids:
            assignment = self.assignments[assignment_id]
            if assignment.status is S.DEPOSITED and assignment.paused_at is None:
                assignment.paused_at = self.clock.seconds
                self._touch(assignment)

    def _resume_holds(self, compartment: Compartment, now: datetime) -> None:
        for assignment_id in compartment.assignment_ids:
            assignment = self.assignments[assignment_id]
            if assignment.paused_at is not None:
                if assignment.hold_deadline is not None:
                    assignment.hold_deadline += self.clock.seconds - assignment.paused_at
                assignment.paused_at = None
                self._touch(assignment)

    def _choose_compartment(
        self, *, size: str | None, compartment_id: str | None, accessible: bool, customer: str
    ) -> Compartment:
        if compartment_id is not None:
            compartment = self._compartment(compartment_id, field="compartment_id")
            if not compartment.in_service:
                raise CompartmentUnavailable(
                    f"compartment {compartment_id} is out of service", field="compartment_id"
                )
            if size is not None and size_rank(self.sizes, compartment.size) < size_rank(
                self.sizes, size
            ):
                raise CompartmentUnavailable(
                    f"compartment {compartment_id} is size {compartment.size}, "
                    f"too small for {size}",
                    field="compartment_id",
                )
            if accessible and not compartment.accessible:
                raise CompartmentUnavailable(
                    f"compartment {compartment_id} is not accessible", field="compartment_id"
                )
            others = self.customers_in(compartment_id) - {customer}
            if others:
                raise CompartmentUnavailable(
                    f"compartment {compartment_id} holds another customer's parcel",
                    field="compartment_id",
                )
            if self.state_of(compartment_id) not in (
                CompartmentState.FREE, CompartmentState.RESERVED, CompartmentState.OCCUPIED
            ):
                raise CompartmentUnavailable(
                    f"compartment {compartment_id} is {self.state_of(compartment_id).value}",
                    field="compartment_id",
                )
            return compartment
        if size is None:
            raise DomainError("say which size or which compartment to reserve", field="size")
        chosen = smallest_fit(self._free_compartments(), self.sizes, size, accessible=accessible)
        if chosen is None:
            what = f"{'accessible ' if accessible else ''}compartment of size {size} or larger"
            raise LockerFull(f"no free {what}", field="size")
        return chosen

    def _require_room_on_the_waiting_list(self) -> None:
        waiting = sum(
            1 for a in self.assignments.values()
            if a.compartment_id is None and a.kind is AssignmentKind.DELIVERY and not a.terminal
        )
        if waiting >= self.max_waiting_parcels:
            raise LockerFull(
                f"{waiting} parcels are already known here without a compartment (the most "
                "this locker keeps); hold a compartment for this one, or cancel some",
                field="hold_compartment",
            )

    def _credential_for_new_parcel(
        self, digest: str, customer: str, now: datetime
    ) -> tuple[Credential | None, bool]:
        """The same customer's live code may cover another parcel; anyone else's may not.

        Returns that credential (or None for a new one), and whether the code collided with
        another customer's live code (see ``code_collisions``).
        """
        for credential in self._live_matches(CredentialKind.PICKUP, digest):
            owners = {
                self.assignments[a].customer_ref
                for a in credential.assignment_ids
                if a in self.assignments
            }
            if owners != {customer}:
                return None, self._withdraw_colliding([credential], now)
            return credential, False
        return None, False

    def _withdraw_colliding(self, credentials: list[Credential], now: datetime) -> bool:
        """Withdraw live codes a new code collided with, silently; whether there were any.

        No event says so: the stream is public on the broker, and the withdrawal would tell
        whoever sent the new code that it was someone's live code.
        """
        for credential in credentials:
            credential.revoked_at = now
            self._touch(credential)
        if credentials:
            self.code_collisions += 1
        return bool(credentials)

    def _live_matches(
        self, kind: CredentialKind, digest: str, now: datetime | None = None
    ) -> list[Credential]:
        return [
            c for c in find_matching(self.credentials.values(), digest)
            if c.kind is kind and self._credential_alive(c)
            and (now is None or c.expires_at is None or c.expires_at > now)
        ]

    def _credential_alive(self, credential: Credential) -> bool:
        """Could this credential ever open a door again?"""
        if credential.revoked_at is not None:
            return False
        if credential.kind is CredentialKind.COURIER:
            return True
        return any(
            a in self.assignments and not self.assignments[a].terminal
            for a in credential.assignment_ids
        )

    def _why_unusable(self, credential: Credential, now: datetime) -> str | None:
        if credential.revoked_at is not None:
            return "revoked"
        if credential.expires_at is not None and credential.expires_at <= now:
            return "expired"
        if credential.kind is CredentialKind.COURIER:
            return "used" if credential.single_use and credential.used_at else None
        # A pickup or return code is single-use per parcel: it works while a parcel it covers
        # can still move, so a second parcel deposited later under the same code is collectable.
        covered = [self.assignments[a] for a in credential.assignment_ids if a in self.assignments]
        statuses = {a.status for a in covered}
        if any(a.compartment_id in self.intents for a in covered) and not any(
            a.status in (S.DEPOSITED, S.ANNOUNCED) and a.compartment_id not in self.intents
            for a in covered
        ):
            return "in_use"  # its door is open right now
        if credential.kind is CredentialKind.PICKUP:
            if S.DEPOSITED in statuses:
                return None
            if S.EXPIRED in statuses:
                return "expired"
            if S.RESERVED in statuses:
                return "not_ready"
            return "used"
        if S.ANNOUNCED in statuses:
            return None
        return "used"

    def _revoke_courier_codes(self, courier_id: str, now: datetime) -> int:
        revoked = 0
        for credential in self.credentials.values():
            if credential.courier_id == courier_id and credential.revoked_at is None:
                credential.revoked_at = now
                self._touch(credential)
                revoked += 1
        return revoked

    def _new_credential(self, kind: CredentialKind, digest: str, now: datetime) -> Credential:
        credential = Credential(id=uuid.uuid4().hex, kind=kind, digest=digest, issued_at=now)
        self.credentials[credential.id] = credential
        return credential

    def _free_compartments(self) -> list[Compartment]:
        return [
            c for c in self.compartments.values()
            if self.state_of(c.id) is CompartmentState.FREE and c.id not in self.intents
        ]

    def _require_openable(self, compartment_id: str, *, allow_out_of_service: bool = False) -> None:
        compartment = self._compartment(compartment_id)
        if compartment_id in self.intents:
            raise InvalidTransition(f"compartment {compartment_id} is already being opened")
        if not compartment.in_service and not allow_out_of_service:
            raise CompartmentUnavailable(f"compartment {compartment_id} is out of service")

    def _require_no_intent(self, assignment: Assignment) -> None:
        if assignment.compartment_id in self.intents:
            raise InvalidTransition(
                f"compartment {assignment.compartment_id} is open for {assignment.id} right now"
            )

    def _require_remote_open_allowed(self) -> None:
        if self.remote_open_lockout is not None:
            raise RemoteOpenRefused(
                "remote opening is locked after a burst of remote openings "
                f"({self.remote_open_lockout}); an operator must clear the alarm"
            )

    def _require_in_service(self) -> None:
        if not self.in_service:
            raise OutOfService(f"the locker is out of service: {self.out_of_service_reason}")

    def _require_strong_code(self, code: str, field: str) -> None:
        if len(code) < self.min_code_length:
            raise WeakCode(
                f"{field} must be at least {self.min_code_length} characters: a shorter code "
                "can be guessed at the keypad (see docs/security.md)",
                field=field,
            )

    def _require_kind(self, credential: Credential, kind: CredentialKind) -> None:
        if credential.kind is not kind:
            raise InvalidCode("This code cannot be used for that.", reason="wrong_kind")

    def _require_size(self, size: str) -> None:
        if size not in self.sizes:
            raise DomainError(
                f"unknown size {size!r}; this locker has {', '.join(self.sizes)}", field="size"
            )

    @staticmethod
    def _require_positive(value: float, name: str) -> None:
        if not value > 0:
            raise DomainError(f"{name} must be positive", field=name)

    def _require_new_assignment(self, assignment_id: str) -> None:
        if not assignment_id:
            raise DomainError("assignment id must not be empty", field="assignment_id")
        if assignment_id in self.assignments:
            raise DuplicateAssignment(
                f"assignment {assignment_id} already exists", field="assignment_id"
            )
        archived = self._archive(assignment_id)
        if archived is not None:
            raise DuplicateAssignment(
                f"assignment {assignment_id} already exists and is {archived.value}",
                field="assignment_id",
            )

    def _compartment(self, compartment_id: str, *, field: str = "compartment_id") -> Compartment:
        try:
            return self.compartments[compartment_id]
        except KeyError:
            raise UnknownCompartment(f"no compartment {compartment_id!r}", field=field) from None

    def _assignment(self, assignment_id: str) -> Assignment:
        assignment = self.assignments.get(assignment_id)
        if assignment is not None:
            return assignment
        archived = self._archive(assignment_id)
        if archived is not None:
            raise InvalidTransition(
                f"assignment {assignment_id} is already {archived.value}", field="assignment_id"
            )
        raise UnknownAssignment(f"no assignment {assignment_id!r}", field="assignment_id")

    def _intent(self, compartment_id: str) -> UnlockIntent:
        try:
            return self.intents[compartment_id]
        except KeyError:
            raise InvalidTransition(
                f"compartment {compartment_id} has no unlock in progress"
            ) from None

    def _touch(self, *objects: Compartment | Assignment | Credential) -> None:
        for obj in objects:
            if isinstance(obj, Compartment):
                self._changes.compartments[obj.id] = obj
            elif isinstance(obj, Assignment):
                self._changes.assignments[obj.id] = obj
            else:
                self._changes.credentials[obj.id] = obj

    def _event(
        self,
        event_type: str,
        now: datetime,
        compartment_id: str | None = None,
        assignment_id: str | None = None,
        **data: object,
    ) -> DomainEvent:
        return DomainEvent(
            type=event_type,
            at=now,
            compartment_id=compartment_id,
            assignment_id=assignment_id,
            data={k: v for k, v in data.items() if v is not None},
        )


_CODE_MESSAGES = {
    "used": "This code has already been used.",
    "expired": "This code has expired.",
    "revoked": "This code is no longer valid.",
    "not_ready": "Your parcel has not been delivered yet.",
    "in_use": "Your compartment is already open.",
    "unknown": "This code is not valid here.",
}

_REASON_SEPARATOR = "; "
"""Between the reasons of a compartment out of service for several at once."""


def _reasons(text: str | None) -> list[str]:
    return text.split(_REASON_SEPARATOR) if text else []


def _solo_customer() -> str:
    """The customer of a parcel the cloud named none for: unique, derived from nothing
    published, so no other parcel can ever claim to be the same customer's."""
    return f"solo:{uuid.uuid4().hex}"
