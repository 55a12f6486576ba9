"""Example-based tests of every Locker transition: what it does, and what it refuses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import timedelta

import pytest

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
    UnknownAssignment,
    UnknownCompartment,
)
from locker_agent.domain.locker import Changes, Locker
from locker_agent.domain.model import (
    AssignmentKind,
    AssignmentStatus,
    CompartmentState,
    Credential,
    CredentialKind,
    DomainEvent,
    DoorState,
    UnlockPurpose,
)

from .support import SECRET, T0, Archive, make_locker, snapshot, take_changes

S = AssignmentStatus
CS = CompartmentState
HOLD = 48 * 3600.0
TTL = 24 * 3600.0

# Six compartments, listed in this order (ties go to the first listed).
SPEC = [
    ("01", "S", False),
    ("02", "S", True),
    ("03", "M", False),
    ("04", "M", False),
    ("05", "L", True),
    ("06", "XL", False),
]


def types(events: list[DomainEvent]) -> list[str]:
    return [e.type for e in events]


class Rig:
    """A locker with all doors closed and nothing pending, plus shortcuts for common steps."""

    def __init__(self) -> None:
        self.archive = Archive()
        self.locker: Locker = make_locker(SPEC, self.archive)
        self.now = T0
        for cid in self.locker.compartments:
            self.locker.door_changed(cid, DoorState.CLOSED, now=self.now)
        self.take()

    def later(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)

    def take(self) -> Changes:
        return take_changes(self.locker, self.archive)

    def reserve(
        self,
        assignment_id: str,
        code: str,
        *,
        size: str | None = "S",
        hold: float = HOLD,
        ttl: float = TTL,
        **kwargs: object,
    ) -> list[DomainEvent]:
        self.later()
        return self.locker.reserve(
            assignment_id,
            pickup_code=code,
            now=self.now,
            hold_seconds=hold,
            reservation_ttl_s=ttl,
            size=size,
            **kwargs,  # type: ignore[arg-type]
        )

    def door(self, cid: str, state: DoorState) -> list[DomainEvent]:
        self.later()
        return self.locker.door_changed(cid, state, now=self.now)

    def open_close(self, cid: str) -> list[DomainEvent]:
        return self.door(cid, DoorState.OPEN) + self.door(cid, DoorState.CLOSED)

    def deposit(self, assignment_id: str) -> list[DomainEvent]:
        self.later()
        (request,) = self.locker.begin_deposit(assignment_id, actor="courier-7", now=self.now)
        assert request.compartment_id is not None
        return self.open_close(request.compartment_id)

    def authenticate(self, code: str) -> Credential:
        self.later()
        return self.locker.authenticate(code, now=self.now)

    def begin_pickup(self, code: str) -> list[DomainEvent]:
        credential = self.authenticate(code)
        return self.locker.begin_pickup(credential, now=self.now)

    def pickup(self, code: str) -> list[DomainEvent]:
        events: list[DomainEvent] = []
        for request in self.begin_pickup(code):
            assert request.compartment_id is not None
            events += self.open_close(request.compartment_id)
        return events

    def tick(self, seconds: float) -> list[DomainEvent]:
        self.later(seconds)
        return self.locker.tick(seconds, now=self.now)

    def status(self, assignment_id: str) -> AssignmentStatus:
        return self.locker.assignments[assignment_id].status

    def state(self, cid: str) -> CompartmentState:
        return self.locker.state_of(cid)

    def credential_of(self, assignment_id: str) -> Credential:
        (credential,) = [
            c for c in self.locker.credentials.values() if assignment_id in c.assignment_ids
        ]
        return credential

    def refuses(
        self, error: type[DomainError], action: Callable[[], object]
    ) -> DomainError:
        """``action`` raises ``error`` and leaves every bit of state as it was."""
        before = snapshot(self.locker)
        with pytest.raises(error) as info:
            action()
        assert snapshot(self.locker) == before
        return info.value


@pytest.fixture
def rig() -> Rig:
    return Rig()


# ----------------------------------------------------------------------------- reserve


def test_reserve_chooses_the_smallest_free_compartment_that_fits(rig: Rig) -> None:
    events = rig.reserve("p1", "10000100", size="S")
    assert [(e.type, e.compartment_id, e.assignment_id, e.data) for e in events] == [
        ("reserved", "01", "p1", {"size": "S", "shared": False})
    ]
    assert rig.reserve("p2", "10000200", size="S")[0].compartment_id == "02"
    # no S left: the smallest larger one, ties going to the first listed
    assert rig.reserve("p3", "10000300", size="S")[0].compartment_id == "03"
    assert rig.reserve("p4", "10000400", size="L")[0].compartment_id == "05"

    parcel = rig.locker.assignments["p1"]
    assert parcel.kind is AssignmentKind.DELIVERY
    assert parcel.status is S.RESERVED
    assert parcel.customer_ref.startswith("solo:")  # never the published assignment id
    assert parcel.hold_seconds == HOLD
    assert parcel.hold_deadline is None
    assert parcel.reservation_deadline == rig.locker.clock.seconds + TTL
    assert rig.locker.compartments["01"].assignment_ids == {"p1"}
    assert rig.state("01") is CS.RESERVED
    assert rig.locker.free_by_size() == {"S": 0, "M": 1, "L": 0, "XL": 1}


def test_reserve_accessible_takes_only_accessible_compartments(rig: Rig) -> None:
    assert rig.reserve("p1", "10000100", size="S", accessible=True)[0].compartment_id == "02"
    assert rig.reserve("p2", "10000200", size="M", accessible=True)[0].compartment_id == "05"
    assert rig.locker.assignments["p1"].accessible is True
    error = rig.refuses(
        LockerFull, lambda: rig.reserve("p3", "10000300", size="S", accessible=True)
    )
    assert "accessible" in error.message
    assert (error.code, error.field) == ("locker_full", "size")


def test_reserve_explicit_compartment(rig: Rig) -> None:
    events = rig.reserve("p1", "10000100", size="S", compartment_id="06")
    assert events[0].compartment_id == "06"
    assert rig.locker.assignments["p1"].size == "S"
    # no size given: the compartment's size is the parcel's
    rig.reserve("p2", "10000200", size=None, compartment_id="04")
    assert rig.locker.assignments["p2"].size == "M"
    assert rig.locker.assignments["p2"].compartment_id == "04"


def test_reserve_explicit_compartment_too_small(rig: Rig) -> None:
    error = rig.refuses(
        CompartmentUnavailable, lambda: rig.reserve("p1", "10000100", size="L", compartment_id="03")
    )
    assert error.field == "compartment_id"
    assert "too small" in error.message


def test_reserve_explicit_compartment_not_accessible(rig: Rig) -> None:
    rig.refuses(
        CompartmentUnavailable,
        lambda: rig.reserve("p1", "10000100", size="S", compartment_id="01", accessible=True),
    )


def test_reserve_explicit_unknown_compartment(rig: Rig) -> None:
    error = rig.refuses(
        UnknownCompartment, lambda: rig.reserve("p1", "10000100", compartment_id="99")
    )
    assert error.field == "compartment_id"


def test_reserve_skips_and_refuses_out_of_service_compartments(rig: Rig) -> None:
    rig.locker.set_compartment_service("03", in_service=False, reason="hinge", now=rig.now)
    rig.refuses(
        CompartmentUnavailable, lambda: rig.reserve("p1", "10000100", size="M", compartment_id="03")
    )
    assert rig.reserve("p1", "10000100", size="M")[0].compartment_id == "04"


def test_reserve_refuses_another_customers_compartment(rig: Rig) -> None:
    rig.reserve("p1", "10000100", customer_ref="alice")
    error = rig.refuses(
        CompartmentUnavailable,
        lambda: rig.reserve("p2", "10000200", compartment_id="01", customer_ref="bob"),
    )
    assert "another customer" in error.message
    assert rig.locker.customers_in("01") == {"alice"}


def test_reserve_refuses_a_compartment_with_an_expired_parcel_even_for_its_owner(
    rig: Rig,
) -> None:
    rig.reserve("p1", "10000100", customer_ref="alice", hold=10)
    rig.deposit("p1")
    rig.tick(10)
    assert rig.state("01") is CS.EXPIRED
    rig.refuses(
        CompartmentUnavailable,
        lambda: rig.reserve("p2", "10000100", compartment_id="01", customer_ref="alice"),
    )


def test_same_customer_shares_one_compartment_under_one_code(rig: Rig) -> None:
    rig.reserve("p1", "42424200", customer_ref="alice")
    events = rig.reserve("p2", "42424200", compartment_id="01", customer_ref="alice")
    assert events[0].data == {"size": "S", "shared": True}
    assert rig.locker.compartments["01"].assignment_ids == {"p1", "p2"}
    (credential,) = rig.locker.credentials.values()
    assert credential.assignment_ids == {"p1", "p2"}

    rig.deposit("p1")
    rig.deposit("p2")
    assert rig.state("01") is CS.OCCUPIED

    requests = rig.begin_pickup("42424200")
    assert [(e.type, e.compartment_id, e.data["assignment_ids"]) for e in requests] == [
        ("unlock_requested", "01", ["p1", "p2"])
    ]
    done = rig.open_close("01")
    assert [(e.type, e.assignment_id) for e in done if e.assignment_id] == [
        ("picked_up", "p1"),
        ("picked_up", "p2"),
    ]
    assert rig.state("01") is CS.FREE
    assert rig.locker.compartments["01"].assignment_ids == set()


def test_one_code_opens_every_compartment_of_the_customer(rig: Rig) -> None:
    rig.reserve("p1", "42424200", customer_ref="alice", size="S")
    rig.reserve("p2", "42424200", customer_ref="alice", size="L")
    rig.deposit("p1")
    rig.deposit("p2")
    requests = rig.begin_pickup("42424200")
    assert [(e.compartment_id, e.data["assignment_ids"]) for e in requests] == [
        ("01", ["p1"]),
        ("05", ["p2"]),
    ]


def test_locker_full_names_the_size(rig: Rig) -> None:
    rig.reserve("p1", "10000100", size="XL")
    error = rig.refuses(LockerFull, lambda: rig.reserve("p2", "10000200", size="XL"))
    assert error.code == "locker_full"
    assert error.field == "size"
    assert "XL" in error.message


def test_reserve_refuses_a_duplicate_id_in_memory_and_archived(rig: Rig) -> None:
    rig.reserve("p1", "10000100")
    error = rig.refuses(DuplicateAssignment, lambda: rig.reserve("p1", "10000200", size="M"))
    assert (error.code, error.field) == ("duplicate_assignment", "assignment_id")

    rig.deposit("p1")
    rig.pickup("10000100")
    rig.take()
    assert "p1" not in rig.locker.assignments
    error = rig.refuses(DuplicateAssignment, lambda: rig.reserve("p1", "10000200"))
    assert "picked_up" in error.message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"hold": 0}, "hold_period"),
        ({"hold": -5}, "hold_period"),
        ({"hold": float("nan")}, "hold_period"),
        ({"ttl": 0}, "reservation_ttl"),
        ({"size": "XXL"}, "size"),
        ({"size": None}, "size"),
    ],
)
def test_reserve_validates_its_arguments(rig: Rig, kwargs: dict[str, object], field: str) -> None:
    error = rig.refuses(DomainError, lambda: rig.reserve("p1", "10000100", **kwargs))  # type: ignore[arg-type]
    assert error.field == field


def test_reserve_refuses_an_empty_id(rig: Rig) -> None:
    assert rig.refuses(DomainError, lambda: rig.reserve("", "10000100")).field == "assignment_id"


def test_a_colliding_code_is_accepted_silently_and_withdrawn_for_both(rig: Rig) -> None:
    # refusing it would tell the sender that someone's code is live: an oracle; keeping
    # either would let one customer open the other's door
    rig.reserve("p1", "77777700", customer_ref="alice")
    events = rig.reserve("p2", "77777700", customer_ref="bob", size="M")
    assert [e.type for e in events] == ["reserved"]  # as for any parcel: nothing told
    assert "p2" in rig.locker.assignments
    assert rig.locker.code_collisions == 1
    [credential] = rig.locker.credentials.values()  # alice's, withdrawn; bob's never made
    assert credential.assignment_ids == {"p1"} and credential.revoked_at == rig.now
    assert rig.refuses(InvalidCode, lambda: rig.authenticate("77777700")).reason == "revoked"


def test_parcels_with_no_customer_ref_never_share(rig: Rig) -> None:
    # the default customer is derived from nothing published (not the assignment id)
    rig.reserve("p1", "77777700")
    rig.reserve("p2", "77777700")
    assert rig.locker.code_collisions == 1  # two customers, not one: a collision
    first = rig.locker.assignments["p1"].customer_ref
    assert first not in ("p1", "p2") and first != rig.locker.assignments["p2"].customer_ref


def test_a_code_is_free_again_once_its_parcel_is_done(rig: Rig) -> None:
    rig.reserve("p1", "77777700", customer_ref="alice")
    rig.deposit("p1")
    rig.pickup("77777700")
    rig.take()
    rig.reserve("p2", "77777700", customer_ref="bob")
    assert rig.locker.assignments["p2"].customer_ref == "bob"


# ------------------------------------------------------------------------------ pickup


def test_pickup_flow(rig: Rig) -> None:
    rig.reserve("p1", "31415900", customer_ref="alice")
    rig.deposit("p1")
    assert rig.status("p1") is S.DEPOSITED
    rig.take()

    credential = rig.authenticate("31415900")
    assert credential.kind is CredentialKind.PICKUP
    assert credential.assignment_ids == {"p1"}
    (request,) = rig.locker.begin_pickup(credential, now=rig.now)
    assert (request.type, request.compartment_id) == ("unlock_requested", "01")
    assert request.data == {"purpose": "pickup", "actor": "customer", "assignment_ids": ["p1"]}
    assert credential.used_at == rig.now
    intent = rig.locker.intents["01"]
    assert (intent.purpose, intent.assignment_ids, intent.door_opened) == (
        UnlockPurpose.PICKUP,
        {"p1"},
        False,
    )
    assert rig.status("p1") is S.DEPOSITED  # nothing moves before the door does

    opened = rig.door("01", DoorState.OPEN)
    assert [(e.type, e.data) for e in opened] == [
        ("door_opened", {"purpose": "pickup", "actor": "customer"})
    ]
    assert rig.locker.intents["01"].door_opened is True
    closed = rig.door("01", DoorState.CLOSED)
    assert [(e.type, e.compartment_id, e.assignment_id) for e in closed] == [
        ("door_closed", "01", None),
        ("picked_up", "01", "p1"),
    ]
    assert closed[1].data == {"actor": "customer"}
    assert rig.status("p1") is S.PICKED_UP
    assert rig.state("01") is CS.FREE
    assert "01" not in rig.locker.intents

    changes = rig.take()
    assert changes.assignments["p1"].status is S.PICKED_UP
    assert changes.intents["01"] is None
    assert credential.id in changes.credentials
    # finished work is forgotten; the archive answers for it
    assert "p1" not in rig.locker.assignments
    assert credential.id not in rig.locker.credentials
    assert rig.archive("p1") is S.PICKED_UP
    error = rig.refuses(InvalidTransition, lambda: rig.locker.cancel("p1", reason="x", now=rig.now))
    assert "picked_up" in error.message
    assert not rig.locker.take_changes()


def test_a_code_opens_only_its_own_compartment(rig: Rig) -> None:
    rig.reserve("p1", "11111100", customer_ref="alice")
    rig.reserve("p2", "22222200", customer_ref="bob")
    rig.reserve("p3", "33333300", customer_ref="alice", size="M")  # another code of alice's
    for parcel in ("p1", "p2", "p3"):
        rig.deposit(parcel)
    requests = rig.begin_pickup("22222200")
    assert [(e.compartment_id, e.data["assignment_ids"]) for e in requests] == [("02", ["p2"])]
    assert set(rig.locker.intents) == {"02"}
    rig.open_close("02")
    assert [rig.status(p) for p in ("p1", "p2", "p3")] == [S.DEPOSITED, S.PICKED_UP, S.DEPOSITED]


def test_wrong_code_is_unknown(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("00000000"))
    assert isinstance(error, InvalidCode)
    assert (error.code, error.field, error.reason) == ("invalid_code", "code", "unknown")


def test_used_code_while_the_door_is_open_and_after_pickup(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    credential = rig.authenticate("31415900")
    rig.locker.begin_pickup(credential, now=rig.now)
    rig.door("01", DoorState.OPEN)
    # while its door is open the code opens nothing more
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("31415900"))
    assert isinstance(error, InvalidCode) and error.reason == "in_use"
    error = rig.refuses(InvalidCode, lambda: rig.locker.begin_pickup(credential, now=rig.now))
    assert isinstance(error, InvalidCode) and error.reason == "in_use"

    rig.door("01", DoorState.CLOSED)
    assert rig.status("p1") is S.PICKED_UP
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("31415900"))
    assert isinstance(error, InvalidCode) and error.reason == "used"


def test_code_of_an_expired_parcel(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=600)
    rig.deposit("p1")
    credential = rig.authenticate("31415900")
    rig.tick(600)
    assert rig.status("p1") is S.EXPIRED
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("31415900"))
    assert isinstance(error, InvalidCode) and error.reason == "expired"
    error = rig.refuses(InvalidCode, lambda: rig.locker.begin_pickup(credential, now=rig.now))
    assert isinstance(error, InvalidCode) and error.reason == "expired"


def test_code_of_a_parcel_not_yet_deposited(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("31415900"))
    assert isinstance(error, InvalidCode) and error.reason == "not_ready"


def test_revoked_code(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    credential = rig.authenticate("31415900")
    events = rig.locker.revoke_codes("p1", now=rig.now)
    assert [(e.type, e.compartment_id, e.assignment_id) for e in events] == [
        ("code_revoked", "01", "p1")
    ]
    assert credential.revoked_at == rig.now
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("31415900"))
    assert isinstance(error, InvalidCode) and error.reason == "revoked"
    error = rig.refuses(InvalidCode, lambda: rig.locker.begin_pickup(credential, now=rig.now))
    assert isinstance(error, InvalidCode) and error.reason == "revoked"
    # nothing left to revoke
    rig.refuses(DomainError, lambda: rig.locker.revoke_codes("p1", now=rig.now))
    rig.refuses(UnknownAssignment, lambda: rig.locker.revoke_codes("nope", now=rig.now))


def test_pickup_refuses_a_code_of_another_kind(rig: Rig) -> None:
    rig.locker.announce_return("r1", size="S", return_code="R-2718xx", now=rig.now, ttl_s=TTL)
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    return_credential = rig.authenticate("R-2718xx")
    pickup_credential = rig.authenticate("31415900")
    error = rig.refuses(
        InvalidCode, lambda: rig.locker.begin_pickup(return_credential, now=rig.now)
    )
    assert isinstance(error, InvalidCode) and error.reason == "wrong_kind"
    error = rig.refuses(
        InvalidCode, lambda: rig.locker.begin_return_deposit(pickup_credential, now=rig.now)
    )
    assert isinstance(error, InvalidCode) and error.reason == "wrong_kind"


def test_authenticate_can_be_limited_to_some_kinds(rig: Rig) -> None:
    rig.locker.announce_return("r1", size="S", return_code="R-2718xx", now=rig.now, ttl_s=TTL)
    error = rig.refuses(
        InvalidCode,
        lambda: rig.locker.authenticate("R-2718xx", now=rig.now, kinds=[CredentialKind.PICKUP]),
    )
    assert isinstance(error, InvalidCode) and error.reason == "unknown"


def test_no_pickup_while_the_locker_is_out_of_service(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    credential = rig.authenticate("31415900")
    rig.locker.set_locker_service(in_service=False, reason="maintenance", now=rig.now)
    error = rig.refuses(OutOfService, lambda: rig.locker.begin_pickup(credential, now=rig.now))
    assert error.code == "out_of_service"
    assert credential.used_at is None


def test_no_pickup_from_an_out_of_service_compartment(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    credential = rig.authenticate("31415900")
    rig.locker.set_compartment_service("01", in_service=False, reason="jammed", now=rig.now)
    rig.refuses(CompartmentUnavailable, lambda: rig.locker.begin_pickup(credential, now=rig.now))
    assert credential.used_at is None


# ----------------------------------------------------------------------------- deposit


def test_deposit_flow(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=HOLD)
    rig.tick(100)
    (request,) = rig.locker.begin_deposit("p1", actor="courier-7", now=rig.now)
    assert (request.type, request.compartment_id, request.data) == (
        "unlock_requested",
        "01",
        {"purpose": "deposit", "actor": "courier-7", "assignment_ids": ["p1"]},
    )
    assert rig.locker.intents["01"].purpose is UnlockPurpose.DEPOSIT
    assert rig.status("p1") is S.RESERVED
    assert [(e.type, e.data) for e in rig.door("01", DoorState.OPEN)] == [
        ("door_opened", {"purpose": "deposit", "actor": "courier-7"})
    ]
    closed = rig.door("01", DoorState.CLOSED)
    assert [(e.type, e.assignment_id, e.data) for e in closed] == [
        ("door_closed", None, {}),
        ("deposited", "p1", {"actor": "courier-7"}),
    ]
    parcel = rig.locker.assignments["p1"]
    assert parcel.status is S.DEPOSITED
    assert parcel.hold_deadline == 100 + HOLD
    assert parcel.reservation_deadline is None
    assert rig.state("01") is CS.OCCUPIED
    assert rig.locker.intents == {}


def test_an_unlock_on_a_door_standing_open_completes_when_it_closes(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    assert types(rig.door("01", DoorState.OPEN)) == ["door_forced"]
    rig.locker.begin_deposit("p1", actor="courier-7", now=rig.now)
    # the door will not open again: the courier loads the parcel and closing completes it
    assert rig.locker.intents["01"].door_opened is True
    assert types(rig.door("01", DoorState.CLOSED)) == ["door_closed", "deposited"]
    assert rig.status("p1") is S.DEPOSITED


def test_deposit_refusals(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.reserve("p2", "27182800", size="M")
    rig.locker.announce_return("r1", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    rig.deposit("p1")

    def deposit(aid: str) -> Callable[[], object]:
        return lambda: rig.locker.begin_deposit(aid, actor="courier-7", now=rig.now)

    assert rig.refuses(InvalidTransition, deposit("p1")).field == "assignment_id"
    rig.refuses(InvalidTransition, deposit("r1"))
    rig.refuses(UnknownAssignment, deposit("nope"))

    rig.locker.begin_operator_open("03", actor="ops", reason="audit", now=rig.now)
    error = rig.refuses(InvalidTransition, deposit("p2"))
    assert "already being opened" in error.message
    rig.locker.abandon_unlock("03", reason="audit done", now=rig.now)

    rig.locker.set_compartment_service("03", in_service=False, reason="jammed", now=rig.now)
    rig.refuses(CompartmentUnavailable, deposit("p2"))
    rig.locker.set_compartment_service("03", in_service=True, reason=None, now=rig.now)

    rig.locker.set_locker_service(in_service=False, reason="maintenance", now=rig.now)
    rig.refuses(OutOfService, deposit("p2"))
    rig.locker.set_locker_service(in_service=True, reason=None, now=rig.now)
    assert types(rig.locker.begin_deposit("p2", actor="courier-7", now=rig.now)) == [
        "unlock_requested"
    ]


# ----------------------------------------------------------------------------- returns


def test_return_flow(rig: Rig) -> None:
    events = rig.locker.announce_return(
        "r1", size="M", return_code="R-58203x", now=rig.now, ttl_s=TTL, customer_ref="carol"
    )
    assert [(e.type, e.compartment_id, e.assignment_id, e.data) for e in events] == [
        ("return_announced", None, "r1", {"size": "M"})
    ]
    ret = rig.locker.assignments["r1"]
    assert (ret.kind, ret.status, ret.compartment_id, ret.customer_ref) == (
        AssignmentKind.RETURN,
        S.ANNOUNCED,
        None,
        "carol",
    )
    assert rig.locker.counts()[CS.FREE] == 6  # an announced return holds no compartment yet

    credential = rig.authenticate("R-58203x")
    assert credential.kind is CredentialKind.RETURN
    (request,) = rig.locker.begin_return_deposit(credential, now=rig.now)
    assert (request.compartment_id, request.data) == (
        "03",
        {"purpose": "return_deposit", "actor": "customer", "assignment_ids": ["r1"]},
    )
    assert ret.compartment_id == "03"
    assert credential.used_at == rig.now
    closed = rig.open_close("03")
    assert [(e.type, e.assignment_id) for e in closed] == [
        ("door_opened", None),
        ("door_closed", None),
        ("return_deposited", "r1"),
    ]
    assert ret.status is S.DEPOSITED
    assert rig.state("03") is CS.RETURN_WAITING
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("R-58203x"))
    assert isinstance(error, InvalidCode) and error.reason == "used"

    (request,) = rig.locker.begin_collect_return("03", actor="courier-7", now=rig.now)
    assert request.data == {
        "purpose": "return_collect",
        "actor": "courier-7",
        "assignment_ids": ["r1"],
    }
    closed = rig.open_close("03")
    assert [(e.type, e.assignment_id, e.data) for e in closed if e.assignment_id] == [
        ("return_collected", "r1", {"actor": "courier-7"})
    ]
    assert ret.status is S.COLLECTED
    assert rig.state("03") is CS.FREE
    rig.take()
    assert rig.archive("r1") is S.COLLECTED


def test_return_needs_a_free_compartment_of_its_size(rig: Rig) -> None:
    rig.reserve("p1", "10000100", size="M")
    rig.reserve("p2", "10000200", size="M")
    rig.reserve("p3", "10000300", size="L")
    rig.reserve("p4", "10000400", size="XL")
    rig.locker.announce_return("r1", size="M", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    credential = rig.authenticate("R-1xxxxx")
    error = rig.refuses(
        LockerFull, lambda: rig.locker.begin_return_deposit(credential, now=rig.now)
    )
    assert error.field == "size"
    assert "M" in error.message


def test_return_refusals(rig: Rig) -> None:
    rig.locker.announce_return("r1", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    rig.locker.announce_return("r9", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    assert rig.locker.code_collisions == 1  # accepted silently; neither code works now
    assert rig.refuses(InvalidCode, lambda: rig.authenticate("R-1xxxxx")).reason == "revoked"
    rig.refuses(
        DuplicateAssignment,
        lambda: rig.locker.announce_return(
            "r1", size="S", return_code="R-2xxxxx", now=rig.now, ttl_s=TTL
        ),
    )
    assert rig.refuses(
        DomainError,
        lambda: rig.locker.announce_return(
            "r2", size="XXL", return_code="R-2xxxxx", now=rig.now, ttl_s=TTL
        ),
    ).field == "size"
    assert rig.refuses(
        DomainError,
        lambda: rig.locker.announce_return(
            "r2", size="S", return_code="R-2xxxxx", now=rig.now, ttl_s=0
        ),
    ).field == "ttl"
    error = rig.refuses(
        InvalidTransition,
        lambda: rig.locker.begin_collect_return("01", actor="courier-7", now=rig.now),
    )
    assert error.field == "compartment_id"
    rig.refuses(
        UnknownCompartment,
        lambda: rig.locker.begin_collect_return("99", actor="courier-7", now=rig.now),
    )


def test_abandoned_return_deposit_releases_the_compartment_and_gives_the_code_back(
    rig: Rig,
) -> None:
    rig.locker.announce_return("r1", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    credential = rig.authenticate("R-1xxxxx")
    rig.locker.begin_return_deposit(credential, now=rig.now)
    assert rig.state("01") is CS.RESERVED
    events = rig.locker.abandon_unlock("01", reason="jam", now=rig.now)
    assert [(e.type, e.data) for e in events] == [
        ("unlock_abandoned", {"purpose": "return_deposit", "actor": "customer", "reason": "jam"})
    ]
    ret = rig.locker.assignments["r1"]
    assert (ret.status, ret.compartment_id) == (S.ANNOUNCED, None)
    assert rig.state("01") is CS.FREE
    assert rig.authenticate("R-1xxxxx") is credential
    rig.locker.begin_return_deposit(credential, now=rig.now)
    assert "return_deposited" in types(rig.open_close("01"))


def test_announced_return_lapses_after_its_ttl(rig: Rig) -> None:
    rig.locker.announce_return("r1", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=600)
    assert rig.tick(599) == []
    events = rig.tick(1)
    assert [(e.type, e.assignment_id, e.data) for e in events] == [
        ("reservation_lapsed", "r1", {"reason": "ttl"})
    ]
    assert rig.status("r1") is S.CANCELLED
    rig.refuses(InvalidCode, lambda: rig.authenticate("R-1xxxxx"))


# ---------------------------------------------------------------- expiry and reclaim


def test_parcel_expires_after_its_hold_period_and_is_reclaimed(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=3600)
    rig.deposit("p1")
    assert rig.tick(3599) == []
    assert rig.status("p1") is S.DEPOSITED
    events = rig.tick(1)
    assert [(e.type, e.compartment_id, e.assignment_id, e.data) for e in events] == [
        ("expired", "01", "p1", {"reason": "hold"})
    ]
    assert rig.state("01") is CS.EXPIRED
    assert rig.tick(3600) == []  # expires once

    (request,) = rig.locker.begin_reclaim("01", actor="courier-7", now=rig.now)
    assert request.data == {"purpose": "reclaim", "actor": "courier-7", "assignment_ids": ["p1"]}
    done = rig.open_close("01")
    assert [(e.type, e.assignment_id) for e in done if e.assignment_id] == [("reclaimed", "p1")]
    assert rig.status("p1") is S.RECLAIMED
    assert rig.state("01") is CS.FREE


def test_reclaim_works_on_an_out_of_service_compartment_and_locker(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=60)
    rig.deposit("p1")
    rig.tick(60)
    rig.locker.set_compartment_service("01", in_service=False, reason="hinge", now=rig.now)
    rig.locker.set_locker_service(in_service=False, reason="maintenance", now=rig.now)
    rig.locker.begin_reclaim("01", actor="courier-7", now=rig.now)
    rig.open_close("01")
    assert rig.status("p1") is S.RECLAIMED


def test_reclaim_needs_an_expired_parcel(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    rig.refuses(
        InvalidTransition, lambda: rig.locker.begin_reclaim("01", actor="c", now=rig.now)
    )
    rig.refuses(
        InvalidTransition, lambda: rig.locker.begin_reclaim("02", actor="c", now=rig.now)
    )


def test_a_compartment_with_a_deposited_and_an_expired_parcel(rig: Rig) -> None:
    """The customer can still collect what has not expired; the rest waits for reclaim."""
    rig.reserve("p1", "42424200", customer_ref="alice", hold=60)
    rig.reserve("p2", "42424200", customer_ref="alice", compartment_id="01", hold=HOLD)
    rig.deposit("p1")
    rig.deposit("p2")
    assert types(rig.tick(60)) == ["expired"]
    assert (rig.status("p1"), rig.status("p2")) == (S.EXPIRED, S.DEPOSITED)
    assert rig.state("01") is CS.OCCUPIED
    (request,) = rig.begin_pickup("42424200")
    assert request.data["assignment_ids"] == ["p2"]
    rig.open_close("01")
    assert (rig.status("p1"), rig.status("p2")) == (S.EXPIRED, S.PICKED_UP)
    assert rig.state("01") is CS.EXPIRED
    rig.locker.begin_reclaim("01", actor="courier-7", now=rig.now)
    assert "reclaimed" in types(rig.open_close("01"))
    assert rig.state("01") is CS.FREE


def test_no_expiry_while_someone_is_at_the_door(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=60)
    rig.deposit("p1")
    rig.begin_pickup("31415900")
    assert rig.tick(3600) == []
    done = rig.open_close("01")
    assert "picked_up" in types(done)


def test_hold_period_does_not_run_while_the_locker_is_out_of_service(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=3600)
    rig.deposit("p1")
    start = rig.locker.clock.seconds
    rig.tick(1000)
    events = rig.locker.set_locker_service(in_service=False, reason="power", now=rig.now)
    assert [(e.type, e.data) for e in events] == [("out_of_service", {"reason": "power"})]
    assert rig.locker.set_locker_service(in_service=False, reason="again", now=rig.now) == []
    assert rig.tick(10 * 3600) == []
    assert rig.locker.clock.seconds == start + 1000
    assert rig.status("p1") is S.DEPOSITED
    assert types(rig.locker.set_locker_service(in_service=True, reason=None, now=rig.now)) == [
        "back_in_service"
    ]
    assert rig.tick(2599) == []
    assert types(rig.tick(1)) == ["expired"]


def test_locker_service_needs_a_reason_to_go_out(rig: Rig) -> None:
    for reason in (None, ""):
        error = rig.refuses(
            DomainError,
            lambda r=reason: rig.locker.set_locker_service(in_service=False, reason=r, now=rig.now),
        )
        assert error.field == "reason"


def test_out_of_service_compartment_pauses_its_parcels_hold(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=3600)
    rig.deposit("p1")
    parcel = rig.locker.assignments["p1"]
    start = rig.locker.clock.seconds
    assert parcel.hold_deadline == start + 3600
    rig.tick(1000)
    events = rig.locker.set_compartment_service(
        "01", in_service=False, reason="door sensor", now=rig.now
    )
    assert [(e.type, e.compartment_id, e.data) for e in events] == [
        ("out_of_service", "01", {"reason": "door sensor"})
    ]
    assert rig.state("01") is CS.OUT_OF_SERVICE
    assert parcel.paused_at == start + 1000
    assert rig.tick(5 * 3600) == []
    assert parcel.status is S.DEPOSITED

    events = rig.locker.set_compartment_service("01", in_service=True, reason=None, now=rig.now)
    assert [(e.type, e.compartment_id) for e in events] == [("back_in_service", "01")]
    assert parcel.paused_at is None
    assert parcel.hold_deadline == start + 3600 + 5 * 3600  # pushed by the paused time
    assert rig.tick(2599) == []
    assert types(rig.tick(1)) == ["expired"]


def test_compartment_service_refusals_and_no_ops(rig: Rig) -> None:
    for reason in (None, ""):
        error = rig.refuses(
            DomainError,
            lambda r=reason: rig.locker.set_compartment_service(
                "01", in_service=False, reason=r, now=rig.now
            ),
        )
        assert error.field == "reason"
    rig.refuses(
        UnknownCompartment,
        lambda: rig.locker.set_compartment_service("99", in_service=False, reason="x", now=rig.now),
    )
    assert rig.locker.set_compartment_service("01", in_service=True, reason=None, now=rig.now) == []


# ------------------------------------------------------------------ reservation TTL


def test_reservation_lapses_after_its_ttl(rig: Rig) -> None:
    rig.reserve("p1", "31415900", ttl=600)
    assert rig.tick(599) == []
    events = rig.tick(1)
    assert [(e.type, e.compartment_id, e.assignment_id, e.data) for e in events] == [
        ("reservation_lapsed", "01", "p1", {"reason": "ttl"})
    ]
    assert rig.status("p1") is S.CANCELLED
    assert rig.state("01") is CS.FREE
    assert rig.locker.compartments["01"].assignment_ids == set()
    rig.take()
    assert rig.archive("p1") is S.CANCELLED
    rig.refuses(
        InvalidTransition, lambda: rig.locker.begin_deposit("p1", actor="c", now=rig.now)
    )


def test_reservation_ttl_does_not_run_while_the_locker_is_out_of_service(rig: Rig) -> None:
    rig.reserve("p1", "31415900", ttl=600)
    rig.locker.set_locker_service(in_service=False, reason="power", now=rig.now)
    assert rig.tick(6000) == []
    rig.locker.set_locker_service(in_service=True, reason=None, now=rig.now)
    assert rig.tick(599) == []
    assert types(rig.tick(1)) == ["reservation_lapsed"]


def test_tick_refuses_negative_time(rig: Rig) -> None:
    before = snapshot(rig.locker)
    with pytest.raises(ValueError, match="negative"):
        rig.locker.tick(-1, now=rig.now)
    assert snapshot(rig.locker) == before


# ------------------------------------------------------------------------------ cancel


def test_cancel_a_reserved_parcel(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    events = rig.locker.cancel("p1", reason="sender cancelled", now=rig.now)
    assert [(e.type, e.compartment_id, e.assignment_id, e.data) for e in events] == [
        ("cancelled", "01", "p1", {"reason": "sender cancelled"})
    ]
    assert rig.status("p1") is S.CANCELLED
    assert rig.state("01") is CS.FREE
    rig.refuses(InvalidTransition, lambda: rig.locker.cancel("p1", reason="x", now=rig.now))
    rig.take()
    rig.refuses(InvalidTransition, lambda: rig.locker.cancel("p1", reason="x", now=rig.now))


def test_cancel_a_deposited_parcel_leaves_it_expired_awaiting_reclaim(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    events = rig.locker.cancel("p1", reason="sender cancelled", now=rig.now)
    assert [(e.type, e.assignment_id, e.data) for e in events] == [
        ("expired", "p1", {"reason": "sender cancelled"})
    ]
    assert rig.status("p1") is S.EXPIRED
    assert rig.state("01") is CS.EXPIRED
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("31415900"))
    assert isinstance(error, InvalidCode) and error.reason == "expired"
    rig.refuses(InvalidTransition, lambda: rig.locker.cancel("p1", reason="x", now=rig.now))
    rig.locker.begin_reclaim("01", actor="courier-7", now=rig.now)
    assert "reclaimed" in types(rig.open_close("01"))


def test_cancel_an_announced_return(rig: Rig) -> None:
    rig.locker.announce_return("r1", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    assert types(rig.locker.cancel("r1", reason="refund", now=rig.now)) == ["cancelled"]
    assert rig.status("r1") is S.CANCELLED


def test_cancel_refusals(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    rig.locker.announce_return("r1", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    rig.locker.begin_return_deposit(rig.authenticate("R-1xxxxx"), now=rig.now)
    rig.open_close("02")
    assert rig.status("r1") is S.DEPOSITED
    rig.refuses(UnknownAssignment, lambda: rig.locker.cancel("nope", reason="x", now=rig.now))
    # a deposited return cannot be cancelled; it has to be collected
    rig.refuses(InvalidTransition, lambda: rig.locker.cancel("r1", reason="x", now=rig.now))
    # nor can a parcel whose door is being opened
    rig.begin_pickup("31415900")
    error = rig.refuses(
        InvalidTransition, lambda: rig.locker.cancel("p1", reason="x", now=rig.now)
    )
    assert "open" in error.message


# ------------------------------------------------------------------------------ extend


def test_extend_a_deposited_parcel(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=3600)
    rig.deposit("p1")
    deadline = rig.locker.assignments["p1"].hold_deadline
    assert deadline is not None
    events = rig.locker.extend("p1", seconds=1800, now=rig.now)
    assert [(e.type, e.compartment_id, e.assignment_id, e.data) for e in events] == [
        ("extended", "01", "p1", {"seconds": 1800})
    ]
    assert rig.locker.assignments["p1"].hold_deadline == deadline + 1800
    assert rig.tick(3600 + 1799) == []
    assert types(rig.tick(1)) == ["expired"]


def test_extend_a_reserved_parcel_lengthens_the_hold_it_will_get(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=3600)
    rig.locker.extend("p1", seconds=600, now=rig.now)
    assert rig.locker.assignments["p1"].hold_seconds == 4200
    rig.deposit("p1")
    parcel = rig.locker.assignments["p1"]
    assert parcel.hold_deadline == rig.locker.clock.seconds + 4200


def test_extend_refusals(rig: Rig) -> None:
    rig.reserve("p1", "31415900", hold=60)
    rig.locker.announce_return("r1", size="S", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    for seconds in (0, -1):
        error = rig.refuses(
            DomainError, lambda s=seconds: rig.locker.extend("p1", seconds=s, now=rig.now)
        )
        assert error.field == "seconds"
    rig.refuses(InvalidTransition, lambda: rig.locker.extend("r1", seconds=60, now=rig.now))
    rig.refuses(UnknownAssignment, lambda: rig.locker.extend("nope", seconds=60, now=rig.now))
    rig.deposit("p1")
    rig.tick(60)
    assert rig.status("p1") is S.EXPIRED
    rig.refuses(InvalidTransition, lambda: rig.locker.extend("p1", seconds=60, now=rig.now))


# ---------------------------------------------------------------------------- couriers


def test_courier_grant_is_reusable_until_it_expires(rig: Rig) -> None:
    events = rig.locker.grant_courier(
        "dhl-12", code="C-99417x", expires_at=rig.now + timedelta(hours=1), now=rig.now
    )
    assert [(e.type, e.compartment_id, e.data) for e in events] == [
        ("courier_granted", None, {"courier_id": "dhl-12"})
    ]
    credential = rig.authenticate("C-99417x")
    assert (credential.kind, credential.courier_id, credential.single_use) == (
        CredentialKind.COURIER,
        "dhl-12",
        False,
    )
    assert rig.authenticate("C-99417x") is credential  # not single-use
    rig.later(3600)
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("C-99417x"))
    assert isinstance(error, InvalidCode) and error.reason == "expired"


def test_courier_revoke(rig: Rig) -> None:
    rig.locker.grant_courier("dhl-12", code="C-99417x", expires_at=None, now=rig.now)
    events = rig.locker.revoke_courier("dhl-12", now=rig.now)
    assert [(e.type, e.data) for e in events] == [
        ("courier_revoked", {"courier_id": "dhl-12", "codes": 1})
    ]
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("C-99417x"))
    assert isinstance(error, InvalidCode) and error.reason == "revoked"
    # a courier with no code here (signed tokens only) can still be revoked
    again = rig.locker.revoke_courier("dhl-12", now=rig.now)
    assert [(e.type, e.data) for e in again] == [
        ("courier_revoked", {"courier_id": "dhl-12", "codes": 0})
    ]
    error = rig.refuses(DomainError, lambda: rig.locker.revoke_courier("", now=rig.now))
    assert error.field == "courier_id"


def test_courier_grant_replaces_the_earlier_code(rig: Rig) -> None:
    rig.locker.grant_courier("dhl-12", code="C-1xxxxx", expires_at=None, now=rig.now)
    rig.locker.grant_courier("dhl-12", code="C-2xxxxx", expires_at=None, now=rig.now)
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("C-1xxxxx"))
    assert isinstance(error, InvalidCode) and error.reason == "revoked"
    assert rig.authenticate("C-2xxxxx").courier_id == "dhl-12"
    # the same courier may be granted the same code again
    rig.locker.grant_courier("dhl-12", code="C-2xxxxx", expires_at=None, now=rig.now)
    assert rig.authenticate("C-2xxxxx").courier_id == "dhl-12"


def test_courier_code_collision_and_expired_codes_no_longer_collide(rig: Rig) -> None:
    rig.locker.grant_courier(
        "dhl-12", code="C-1xxxxx", expires_at=rig.now + timedelta(minutes=5), now=rig.now
    )
    rig.locker.grant_courier("ups-3", code="C-1xxxxx", expires_at=None, now=rig.now)
    assert rig.locker.code_collisions == 1  # accepted silently; neither courier gets in
    assert rig.refuses(InvalidCode, lambda: rig.authenticate("C-1xxxxx")).reason == "revoked"
    rig.later(300)
    rig.locker.grant_courier("ups-3", code="C-1xxxxx", expires_at=None, now=rig.now)
    assert rig.authenticate("C-1xxxxx").courier_id == "ups-3"


def test_courier_grant_refusals(rig: Rig) -> None:
    assert rig.refuses(
        DomainError,
        lambda: rig.locker.grant_courier("", code="C-1xxxxx", expires_at=None, now=rig.now),
    ).field == "courier_id"
    assert rig.refuses(
        DomainError,
        lambda: rig.locker.grant_courier(
            "dhl-12", code="C-1xxxxx", expires_at=rig.now, now=rig.now
        ),
    ).field == "expires_at"


# ------------------------------------------------------------------------------- doors


def test_forced_door(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    events = rig.door("01", DoorState.OPEN)
    assert [(e.type, e.compartment_id) for e in events] == [("door_forced", "01")]
    assert rig.locker.intents == {}
    assert types(rig.door("01", DoorState.CLOSED)) == ["door_closed"]
    assert rig.status("p1") is S.DEPOSITED  # a forced door moves no parcel


def test_repeated_door_reports_are_ignored(rig: Rig) -> None:
    assert rig.door("01", DoorState.CLOSED) == []
    rig.door("01", DoorState.OPEN)
    assert rig.door("01", DoorState.OPEN) == []


def test_door_of_an_unknown_compartment(rig: Rig) -> None:
    rig.refuses(UnknownCompartment, lambda: rig.door("99", DoorState.OPEN))


def test_operator_open_changes_no_parcel(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    (request,) = rig.locker.begin_operator_open("01", actor="ops", reason="audit", now=rig.now)
    assert request.data == {
        "purpose": "operator",
        "actor": "ops",
        "reason": "audit",
        "assignment_ids": [],
    }
    events = rig.open_close("01")
    assert types(events) == ["door_opened", "door_closed"]
    assert rig.status("p1") is S.DEPOSITED
    assert rig.locker.intents == {}
    error = rig.refuses(
        DomainError,
        lambda: rig.locker.begin_operator_open("01", actor="ops", reason="", now=rig.now),
    )
    assert error.field == "reason"


def test_operator_may_open_an_out_of_service_compartment(rig: Rig) -> None:
    rig.locker.set_compartment_service("03", in_service=False, reason="hinge", now=rig.now)
    (request,) = rig.locker.begin_operator_open("03", actor="ops", reason="repair", now=rig.now)
    assert request.compartment_id == "03"
    assert types(rig.open_close("03")) == ["door_opened", "door_closed"]
    assert rig.state("03") is CS.OUT_OF_SERVICE


def test_record_pulse(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.refuses(UnknownCompartment, lambda: rig.locker.record_pulse("99", now=rig.now))
    rig.locker.begin_deposit("p1", actor="courier-7", now=rig.now)
    events = rig.locker.record_pulse("01", now=rig.now)
    assert [(e.type, e.compartment_id, e.data) for e in events] == [
        ("unlock_pulsed", "01", {"purpose": "deposit", "actor": "courier-7"})
    ]
    assert rig.status("p1") is S.RESERVED  # a pulse is a fact, not a transition


def test_abandon_unlock_gives_a_pickup_code_back(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    credential = rig.authenticate("31415900")
    rig.locker.begin_pickup(credential, now=rig.now)
    events = rig.locker.abandon_unlock("01", reason="jam", now=rig.now)
    assert [(e.type, e.compartment_id, e.data) for e in events] == [
        ("unlock_abandoned", "01", {"purpose": "pickup", "actor": "customer", "reason": "jam"})
    ]
    assert rig.locker.intents == {}
    assert rig.status("p1") is S.DEPOSITED
    assert rig.authenticate("31415900") is credential
    assert "picked_up" in types(rig.pickup("31415900"))


def test_abandoned_deposit_keeps_the_parcel_reserved(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.locker.begin_deposit("p1", actor="courier-7", now=rig.now)
    rig.locker.abandon_unlock("01", reason="jam", now=rig.now)
    assert rig.status("p1") is S.RESERVED
    assert rig.locker.intents == {}


def test_abandon_unlock_refusals(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    rig.deposit("p1")
    rig.refuses(
        InvalidTransition, lambda: rig.locker.abandon_unlock("01", reason="jam", now=rig.now)
    )
    rig.begin_pickup("31415900")
    rig.door("01", DoorState.OPEN)
    error = rig.refuses(
        InvalidTransition, lambda: rig.locker.abandon_unlock("01", reason="jam", now=rig.now)
    )
    assert "completes on closing" in error.message


# --------------------------------------------------------------- queries and changes


def test_counts_cover_every_state(rig: Rig) -> None:
    rig.reserve("p1", "10000100", size="S")  # 01 reserved
    rig.reserve("p2", "10000200", size="S")  # 02 occupied
    rig.deposit("p2")
    rig.reserve("p3", "10000300", size="M", hold=10)  # 03 expired
    rig.deposit("p3")
    rig.tick(10)
    rig.locker.announce_return("r1", size="M", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    rig.locker.begin_return_deposit(rig.authenticate("R-1xxxxx"), now=rig.now)  # 04 return waiting
    rig.open_close("04")
    rig.locker.set_compartment_service("05", in_service=False, reason="x", now=rig.now)
    assert rig.locker.counts() == {
        CS.FREE: 1,
        CS.RESERVED: 1,
        CS.OCCUPIED: 1,
        CS.EXPIRED: 1,
        CS.RETURN_WAITING: 1,
        CS.OUT_OF_SERVICE: 1,
    }
    assert [rig.state(c) for c in ("01", "02", "03", "04", "05", "06")] == [
        CS.RESERVED,
        CS.OCCUPIED,
        CS.EXPIRED,
        CS.RETURN_WAITING,
        CS.OUT_OF_SERVICE,
        CS.FREE,
    ]
    assert rig.locker.free_by_size() == {"S": 0, "M": 0, "L": 0, "XL": 1}
    rig.refuses(UnknownCompartment, lambda: rig.state("99"))


def test_take_changes_reports_touched_objects_once(rig: Rig) -> None:
    rig.reserve("p1", "31415900")
    changes = rig.take()
    assert set(changes.assignments) == {"p1"}
    assert set(changes.compartments) == {"01"}
    assert len(changes.credentials) == 1
    assert not rig.take()
    rig.locker.set_locker_service(in_service=False, reason="x", now=rig.now)
    assert rig.take().locker is True
    # a live assignment is kept in memory
    assert "p1" in rig.locker.assignments


# ------------------------------------------------------- invalid transitions, in bulk


@dataclass
class Busy:
    rig: Rig
    reserved_credential: Credential
    deposited_credential: Credential


@pytest.fixture
def busy() -> Busy:
    """A locker with something in every state: the backdrop for the refusals below."""
    rig = Rig()
    rig.reserve("p_res", "11111100", customer_ref="alice")  # 01 reserved
    rig.reserve("p_done", "44444400", customer_ref="dave")  # 02, then free again
    rig.deposit("p_done")
    rig.pickup("44444400")
    rig.reserve("p_dep", "22222200", size="M", customer_ref="bob")  # 03 occupied, door open
    rig.deposit("p_dep")
    rig.reserve("p_exp", "33333300", size="M", customer_ref="erin", hold=10)  # 04 expired
    rig.deposit("p_exp")
    rig.tick(10)
    rig.locker.announce_return("r1", size="L", return_code="R-1xxxxx", now=rig.now, ttl_s=TTL)
    rig.locker.set_compartment_service("06", in_service=False, reason="hinge", now=rig.now)
    rig.locker.grant_courier("dhl-12", code="C-1xxxxx", expires_at=None, now=rig.now)
    deposited_credential = rig.authenticate("22222200")
    rig.locker.begin_pickup(deposited_credential, now=rig.now)
    rig.door("03", DoorState.OPEN)
    rig.take()
    assert rig.archive("p_done") is S.PICKED_UP
    assert rig.status("p_exp") is S.EXPIRED
    return Busy(rig, rig.credential_of("p_res"), deposited_credential)


def _r(rig: Rig, aid: str, code: str, **kwargs: object) -> Callable[[], object]:
    return lambda: rig.reserve(aid, code, **kwargs)  # type: ignore[arg-type]


REFUSALS: list[tuple[str, type[DomainError], Callable[[Busy], Callable[[], object]]]] = [
    ("reserve-duplicate", DuplicateAssignment, lambda b: _r(b.rig, "p_res", "55555500")),
    ("reserve-archived", DuplicateAssignment, lambda b: _r(b.rig, "p_done", "55555500")),
    ("reserve-full", LockerFull, lambda b: _r(b.rig, "p9", "55555500", size="XL")),
    (
        "reserve-other-customer",
        CompartmentUnavailable,
        lambda b: _r(b.rig, "p9", "55555500", compartment_id="01", customer_ref="x"),
    ),
    (
        "reserve-out-of-service",
        CompartmentUnavailable,
        lambda b: _r(b.rig, "p9", "55555500", compartment_id="06"),
    ),
    (
        "reserve-expired-compartment",
        CompartmentUnavailable,
        lambda b: _r(b.rig, "p9", "33333300", compartment_id="04", customer_ref="erin"),
    ),
    ("reserve-bad-hold", DomainError, lambda b: _r(b.rig, "p9", "55555500", hold=0)),
    (
        "cancel-archived",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.cancel("p_done", reason="x", now=b.rig.now),
    ),
    (
        "cancel-unknown",
        UnknownAssignment,
        lambda b: lambda: b.rig.locker.cancel("nope", reason="x", now=b.rig.now),
    ),
    (
        "cancel-door-open",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.cancel("p_dep", reason="x", now=b.rig.now),
    ),
    (
        "cancel-expired",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.cancel("p_exp", reason="x", now=b.rig.now),
    ),
    (
        "extend-expired",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.extend("p_exp", seconds=60, now=b.rig.now),
    ),
    (
        "extend-archived",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.extend("p_done", seconds=60, now=b.rig.now),
    ),
    (
        "extend-zero",
        DomainError,
        lambda b: lambda: b.rig.locker.extend("p_res", seconds=0, now=b.rig.now),
    ),
    (
        "announce-duplicate",
        DuplicateAssignment,
        lambda b: lambda: b.rig.locker.announce_return(
            "p_res", size="S", return_code="R-9xxxxx", now=b.rig.now, ttl_s=TTL
        ),
    ),
    ("authenticate-unknown", InvalidCode, lambda b: lambda: b.rig.authenticate("99999900")),
    ("authenticate-not-ready", InvalidCode, lambda b: lambda: b.rig.authenticate("11111100")),
    ("authenticate-used", InvalidCode, lambda b: lambda: b.rig.authenticate("22222200")),
    ("authenticate-expired", InvalidCode, lambda b: lambda: b.rig.authenticate("33333300")),
    ("authenticate-done", InvalidCode, lambda b: lambda: b.rig.authenticate("44444400")),
    (
        "pickup-used",
        InvalidCode,
        lambda b: lambda: b.rig.locker.begin_pickup(b.deposited_credential, now=b.rig.now),
    ),
    (
        "pickup-not-ready",
        InvalidCode,
        lambda b: lambda: b.rig.locker.begin_pickup(b.reserved_credential, now=b.rig.now),
    ),
    (
        "return-deposit-wrong-kind",
        InvalidCode,
        lambda b: lambda: b.rig.locker.begin_return_deposit(
            b.reserved_credential, now=b.rig.now
        ),
    ),
    (
        "deposit-deposited",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.begin_deposit("p_dep", actor="c", now=b.rig.now),
    ),
    (
        "deposit-return",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.begin_deposit("r1", actor="c", now=b.rig.now),
    ),
    (
        "collect-nothing",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.begin_collect_return("01", actor="c", now=b.rig.now),
    ),
    (
        "reclaim-nothing",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.begin_reclaim("01", actor="c", now=b.rig.now),
    ),
    (
        "reclaim-unknown-compartment",
        UnknownCompartment,
        lambda b: lambda: b.rig.locker.begin_reclaim("99", actor="c", now=b.rig.now),
    ),
    (
        "operator-busy",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.begin_operator_open(
            "03", actor="ops", reason="x", now=b.rig.now
        ),
    ),
    (
        "operator-no-reason",
        DomainError,
        lambda b: lambda: b.rig.locker.begin_operator_open(
            "01", actor="ops", reason="", now=b.rig.now
        ),
    ),
    (
        "abandon-no-intent",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.abandon_unlock("01", reason="x", now=b.rig.now),
    ),
    (
        "abandon-door-opened",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.abandon_unlock("03", reason="x", now=b.rig.now),
    ),
    (
        "pulse-unknown-compartment",
        UnknownCompartment,
        lambda b: lambda: b.rig.locker.record_pulse("99", now=b.rig.now),
    ),
    (
        "door-unknown-compartment",
        UnknownCompartment,
        lambda b: lambda: b.rig.locker.door_changed("99", DoorState.OPEN, now=b.rig.now),
    ),
    (
        "compartment-service-no-reason",
        DomainError,
        lambda b: lambda: b.rig.locker.set_compartment_service(
            "01", in_service=False, reason=None, now=b.rig.now
        ),
    ),
    (
        "locker-service-no-reason",
        DomainError,
        lambda b: lambda: b.rig.locker.set_locker_service(
            in_service=False, reason="", now=b.rig.now
        ),
    ),
    (
        "revoke-nameless-courier",
        DomainError,
        lambda b: lambda: b.rig.locker.revoke_courier("", now=b.rig.now),
    ),
    (
        "grant-already-expired",
        DomainError,
        lambda b: lambda: b.rig.locker.grant_courier(
            "ups-3", code="C-3xxxxx", expires_at=b.rig.now - timedelta(seconds=1), now=b.rig.now
        ),
    ),
    (
        "revoke-codes-archived",
        InvalidTransition,
        lambda b: lambda: b.rig.locker.revoke_codes("p_done", now=b.rig.now),
    ),
]


@pytest.mark.parametrize(
    ("error", "make_action"), [(e, m) for _, e, m in REFUSALS], ids=[n for n, _, _ in REFUSALS]
)
def test_invalid_transition_raises_and_changes_nothing(
    busy: Busy,
    error: type[DomainError],
    make_action: Callable[[Busy], Callable[[], object]],
) -> None:
    busy.rig.refuses(error, make_action(busy))


def test_refused_transitions_while_the_locker_is_out_of_service(busy: Busy) -> None:
    rig = busy.rig
    rig.locker.set_locker_service(in_service=False, reason="maintenance", now=rig.now)
    rig.refuses(OutOfService, lambda: rig.locker.begin_deposit("p_res", actor="c", now=rig.now))
    rig.refuses(
        OutOfService, lambda: rig.locker.begin_pickup(busy.reserved_credential, now=rig.now)
    )
    return_credential = rig.authenticate("R-1xxxxx")
    rig.refuses(
        OutOfService, lambda: rig.locker.begin_return_deposit(return_credential, now=rig.now)
    )


# ---------------------------------------------------------------- codes stay secret


def test_codes_never_appear_in_events_reprs_or_credentials(rig: Rig) -> None:
    codes = {
        CredentialKind.PICKUP: ["73194600", "65028400"],
        CredentialKind.RETURN: ["R-58203x"],
        CredentialKind.COURIER: ["C-99417x"],
    }
    all_codes = [c for group in codes.values() for c in group]
    events: list[DomainEvent] = []
    changes: list[Changes] = []
    messages: list[str] = []

    events += rig.reserve("p1", "73194600", customer_ref="alice")
    events += rig.reserve("p2", "65028400", size="M", customer_ref="bob")
    events += rig.locker.announce_return(
        "r1", size="S", return_code="R-58203x", now=rig.now, ttl_s=TTL
    )
    events += rig.locker.grant_courier("dhl-12", code="C-99417x", expires_at=None, now=rig.now)
    changes.append(rig.take())
    events += rig.deposit("p1")
    events += rig.deposit("p2")
    events += rig.reserve("p3", "65028400", customer_ref="carol")  # collides: both withdrawn
    credential = rig.authenticate("73194600")
    events += rig.locker.begin_pickup(credential, now=rig.now)
    intents_repr = repr(rig.locker.intents)
    try:
        rig.authenticate("73194600")
    except InvalidCode as error:
        messages.append(str(error))
    events += rig.open_close("01")
    try:
        rig.authenticate("65028400")
    except InvalidCode as error:
        messages.append(str(error))
    events += rig.locker.begin_return_deposit(rig.authenticate("R-58203x"), now=rig.now)
    events += rig.open_close("01")
    state_repr = repr(
        (
            rig.locker.compartments,
            rig.locker.assignments,
            rig.locker.credentials,
            rig.locker.intents,
            rig.locker.clock,
            rig.locker,
        )
    )
    changes.append(rig.take())

    assert len(messages) == 2  # both refused codes were exercised (the collision is silent)
    texts = [
        repr(events),
        *(str(e.data) for e in events),
        repr(changes),
        intents_repr,
        state_repr,
        *messages,
    ]
    for code in all_codes:
        for text in texts:
            assert code not in text

    hasher = CodeHasher(SECRET)
    seen = {c.id: c for change in changes for c in change.credentials.values()}
    assert len(seen) == len(all_codes)  # one credential per code, and only digests inside
    for credential in seen.values():
        assert not hasattr(credential, "code")
        (code,) = [
            c
            for c in codes[credential.kind]
            if hasher.digest(credential.kind, c) == credential.digest
        ]
        assert len(credential.digest) == 64
        int(credential.digest, 16)  # hex
        for f in fields(credential):
            assert code not in repr(getattr(credential, f.name))


# ------------------------------------------------------------------------ CodeHasher


def test_code_hasher_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="32"):
        CodeHasher(SECRET[:31])
    CodeHasher(SECRET)


def test_code_hasher_mixes_in_the_kind_and_the_secret() -> None:
    hasher = CodeHasher(SECRET)
    digests = {hasher.digest(kind, "12345600") for kind in CredentialKind}
    assert len(digests) == len(CredentialKind)
    assert hasher.digest(CredentialKind.PICKUP, "12345600") == hasher.digest(
        CredentialKind.PICKUP, "12345600"
    )
    assert hasher.digest(CredentialKind.PICKUP, "12345600") != hasher.digest(
        CredentialKind.PICKUP, "12345700"
    )
    other = CodeHasher(bytes(reversed(SECRET)))
    assert other.digest(CredentialKind.PICKUP, "12345600") != hasher.digest(
        CredentialKind.PICKUP, "12345600"
    )


def test_find_matching_returns_every_match() -> None:
    hasher = CodeHasher(SECRET)
    digest = hasher.digest(CredentialKind.PICKUP, "1")
    a = Credential(id="a", kind=CredentialKind.PICKUP, digest=digest)
    other = hasher.digest(CredentialKind.PICKUP, "2")
    b = Credential(id="b", kind=CredentialKind.PICKUP, digest=other)
    c = Credential(id="c", kind=CredentialKind.PICKUP, digest=digest)
    assert find_matching([a, b, c], digest) == [a, c]


def test_service_clock() -> None:
    clock = ServiceClock()
    clock.advance(10, in_service=True)
    clock.advance(10, in_service=False)
    assert clock.seconds == 10
    assert clock.deadline(5) == 15
    assert clock.remaining(15) == 5
    assert clock.remaining(3) == 0
    assert not clock.is_past(11)
    assert clock.is_past(10)


# ------------------------------------------------------------------ regressions


def test_shared_code_still_opens_a_parcel_deposited_after_the_first_pickup(rig: Rig) -> None:
    """A code shared by two parcels is not used up by collecting the first one."""
    rig.reserve("p1", "42424200", customer_ref="alice")
    rig.reserve("p2", "42424200", customer_ref="alice", compartment_id="01")
    rig.deposit("p1")
    rig.pickup("42424200")  # p2 is not there yet: only p1 is collected
    assert rig.status("p2") is S.RESERVED
    rig.deposit("p2")
    assert "picked_up" in types(rig.pickup("42424200"))


def test_parcel_deposited_into_an_out_of_service_compartment_has_its_hold_paused(
    rig: Rig,
) -> None:
    """Taken out of service while the courier had the door open: the hold must not run."""
    rig.reserve("p1", "31415900", hold=3600)
    rig.locker.begin_deposit("p1", actor="courier-7", now=rig.now)
    rig.door("01", DoorState.OPEN)
    rig.locker.set_compartment_service("01", in_service=False, reason="hinge broke", now=rig.now)
    rig.door("01", DoorState.CLOSED)
    assert rig.status("p1") is S.DEPOSITED
    credential = rig.authenticate("31415900")
    rig.refuses(CompartmentUnavailable, lambda: rig.locker.begin_pickup(credential, now=rig.now))
    rig.tick(2 * 3600)
    assert rig.status("p1") is S.DEPOSITED  # the customer could not have collected it
    rig.locker.set_compartment_service("01", in_service=True, reason=None, now=rig.now)
    assert rig.tick(3599) == []  # the full hold period, from being back in service
    assert types(rig.tick(1)) == ["expired"]


def test_a_later_parcel_under_a_code_being_used_can_be_collected(rig: Rig) -> None:
    rig.reserve("p1", "42424200", customer_ref="alice")
    rig.deposit("p1")
    rig.begin_pickup("42424200")
    rig.reserve("p2", "42424200", customer_ref="alice", size="M")  # while p1's door is open
    assert "picked_up" in types(rig.open_close("01"))
    rig.deposit("p2")
    assert [e.assignment_id for e in rig.pickup("42424200") if e.type == "picked_up"] == ["p2"]
    rig.take()
    error = rig.refuses(InvalidCode, lambda: rig.authenticate("42424200"))
    assert isinstance(error, InvalidCode)



def test_parcels_without_a_compartment_are_capped(rig: Rig) -> None:
    # each costs memory, and anyone signing assigns could otherwise add them without end
    rig.locker.max_waiting_parcels = 3
    for n in range(3):
        rig.reserve(f"w{n}", f"2468{n}000", hold_compartment=False)
    error = rig.refuses(LockerFull, lambda: rig.reserve("w3", "24683000", hold_compartment=False))
    assert error.field == "hold_compartment"
    rig.reserve("p1", "13579000")  # one with a compartment held is not on that list
    rig.locker.cancel("w0", reason="x", now=rig.now)
    rig.reserve("w3", "24683000", hold_compartment=False)  # room again
