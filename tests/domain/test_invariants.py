"""Stateful property test: random sequences of transitions never break the locker's invariants.

A Hypothesis state machine drives a six-compartment locker through every transition with
random (often wrong) codes, ids and compartments. Refusals (``DomainError``) are expected and
must change nothing; any other exception is a bug. After every step the invariants hold:

* a compartment never holds assignments of two different customers;
* a code opens only compartments holding an assignment created with that very code;
* nothing leaves a terminal state, and statuses only move along the lifecycle;
* ``counts()`` covers every compartment and each compartment's state fits its assignments;
* assignments and compartments point at each other;
* an open door's assignments do not move until it closes;
* no event, credential or repr contains a code;
* a refused transition (``DomainError``) changed nothing at all.

Inputs are drawn mostly from what is live in the locker, so deep paths (deposit, pickup,
expiry, reclaim, returns) are reached within a few dozen steps, and otherwise from pools that
include wrong, unknown and finished ids, codes and compartments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from hypothesis import event as note_path
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from locker_agent.domain.errors import DomainError
from locker_agent.domain.locker import Locker
from locker_agent.domain.model import (
    TERMINAL_STATUSES,
    AssignmentKind,
    AssignmentStatus,
    CompartmentState,
    Credential,
    CredentialKind,
    DomainEvent,
    DoorState,
    UnlockPurpose,
)

from .support import T0, Archive, make_locker, snapshot, take_changes

S = AssignmentStatus
CS = CompartmentState
K = AssignmentKind

SPEC = [
    ("c1", "S", False),
    ("c2", "S", True),
    ("c3", "M", False),
    ("c4", "M", True),
    ("c5", "L", False),
    ("c6", "XL", False),
]
COMPARTMENT_IDS = [cid for cid, _, _ in SPEC]
ID_POOL = [f"a{i}" for i in range(8)]
CUSTOMERS = ["alice", "bob", "carol"]

# Codes are distinctive strings (never hex, never part of an id, actor or reason), so finding
# one in an event or a repr can only mean it leaked. Some are equal across kinds on purpose.
PICKUP_CODES = ["PIN-Kilo-1", "PIN-Lima-2", "PIN-Mike-3", "PIN-Oscar-4"]
RETURN_CODES = ["RET-Papa-1", "RET-Quebec-2", "PIN-Kilo-1"]
COURIER_CODES = ["CUR-Romeo-1", "CUR-Sierra-2", "PIN-Lima-2"]
WRONG_CODES = ["PIN-Zulu-9", ""]
ALL_CODES = sorted({*PICKUP_CODES, *RETURN_CODES, *COURIER_CODES, *WRONG_CODES} - {""})

ids = st.sampled_from([*ID_POOL, "ghost", ""])
customers = st.sampled_from([*CUSTOMERS, None])
compartment_ids = st.sampled_from([*COMPARTMENT_IDS, "c9"])
sizes = st.sampled_from(["S", "M", "L", "XL", "S", "M"])
any_code = st.sampled_from(PICKUP_CODES + RETURN_CODES + COURIER_CODES + WRONG_CODES)
durations = st.sampled_from([600.0, 3600.0, 30.0, 7200.0, 1800.0])
elapsed = st.sampled_from([0.0, 1.0, 30.0, 300.0, 600.0, 3600.0])
reasons = st.sampled_from(["hinge", "audit", None, ""])
# A creation request is well formed three times in four; otherwise exactly one thing is wrong.
flaws = st.sampled_from([None, None, None, None, None, None, "size", "no_size", "duration", "id"])
BAD = {"size": "XXL", "no_size": None, "duration": 0.0, "id": ""}
mostly = st.sampled_from([True, True, True, False])

# Every status an assignment may move to from the one before (a step moves it at most once).
ALLOWED_MOVES = {
    (K.DELIVERY, S.RESERVED): {S.DEPOSITED, S.CANCELLED},
    (K.DELIVERY, S.DEPOSITED): {S.PICKED_UP, S.EXPIRED},
    (K.DELIVERY, S.EXPIRED): {S.RECLAIMED},
    (K.RETURN, S.ANNOUNCED): {S.DEPOSITED, S.CANCELLED},
    (K.RETURN, S.DEPOSITED): {S.COLLECTED},
}

# What an unlock waits on: its assignments stay in this status until the door closes.
INTENT_BEFORE = {
    UnlockPurpose.PICKUP: (K.DELIVERY, S.DEPOSITED),
    UnlockPurpose.DEPOSIT: (K.DELIVERY, S.RESERVED),
    UnlockPurpose.RETURN_DEPOSIT: (K.RETURN, S.ANNOUNCED),
    UnlockPurpose.RETURN_COLLECT: (K.RETURN, S.DEPOSITED),
    UnlockPurpose.RECLAIM: (K.DELIVERY, S.EXPIRED),
}


class LockerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.archive = Archive()
        self.locker: Locker = make_locker(SPEC, self.archive)
        self.now = T0
        # the model: how each assignment was created, and what became of it
        self.code_of: dict[str, tuple[CredentialKind, str]] = {}
        self.kind_of: dict[str, AssignmentKind] = {}
        self.last_status: dict[str, AssignmentStatus] = {}
        self.terminal: dict[str, AssignmentStatus] = {}
        self.credentials_seen: list[tuple[Credential, str]] = []
        # service seconds counted so far against each live deadline, and what it allows:
        # the reservation TTL until a parcel is deposited, then its hold period
        self.served: dict[str, float] = {}
        self.allowed: dict[str, float] = {}
        for cid in self.locker.compartments:  # start-up: every door reads closed
            self.locker.door_changed(cid, DoorState.CLOSED, now=self.now)
        take_changes(self.locker, self.archive)

    # ------------------------------------------------------------------ helpers

    def _later(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)

    def _do(self, action: Callable[[], list[DomainEvent]]) -> list[DomainEvent] | None:
        """Run a transition: a refusal must change nothing; a success is checked event by event."""
        before = snapshot(self.locker)
        try:
            events = action()
        except DomainError:
            assert snapshot(self.locker) == before, "a refused transition changed state"
            return None
        self._check_events(events)
        return events

    def _check_events(self, events: list[DomainEvent]) -> None:
        for event in events:
            text = repr(event)
            for code in ALL_CODES:
                assert code not in text, f"code {code!r} leaked into {event.type}"
            touched = {event.assignment_id, *event.data.get("assignment_ids", ())}  # type: ignore[misc]
            if event.type != "code_revoked":
                finished = touched & self.terminal.keys()
                assert not finished, f"{event.type} touched finished assignments {finished}"
            self._follow_deadlines(event)

    def _start_deadline(self, assignment_id: str, seconds: float) -> None:
        self.served[assignment_id] = 0.0
        self.allowed[assignment_id] = seconds

    def _follow_deadlines(self, event: DomainEvent) -> None:
        assignment_id = event.assignment_id
        if assignment_id is None:
            return
        assignment = self.locker.assignments.get(assignment_id)
        if event.type == "deposited":
            assert assignment is not None
            self._start_deadline(assignment_id, assignment.hold_seconds)
        elif event.type == "extended" and assignment is not None:
            if assignment.status is S.DEPOSITED:
                self.allowed[assignment_id] += event.data["seconds"]  # type: ignore[operator]
        elif event.type in ("expired", "reservation_lapsed") and event.data.get("reason") in (
            "hold",
            "ttl",
        ):
            served, allowed = self.served[assignment_id], self.allowed[assignment_id]
            assert served >= allowed, (
                f"{assignment_id} {event.type} after {served} of its {allowed} service seconds"
            )

    def _count_service_time(self, seconds: float) -> None:
        """Time that counts: reservations while the locker serves customers; a deposited
        parcel's hold only while its own compartment does too."""
        if not self.locker.in_service:
            return
        for assignment_id, assignment in self.locker.assignments.items():
            if assignment_id not in self.served:
                continue
            if assignment.status in (S.RESERVED, S.ANNOUNCED):
                self.served[assignment_id] += seconds
            elif assignment.kind is K.DELIVERY and assignment.status is S.DEPOSITED:
                assert assignment.compartment_id is not None
                if self.locker.compartments[assignment.compartment_id].in_service:
                    self.served[assignment_id] += seconds

    def _check_nothing_overdue(self) -> None:
        for assignment_id, assignment in self.locker.assignments.items():
            if assignment_id not in self.served or assignment.compartment_id in self.locker.intents:
                continue  # no deadline, or someone is at the door right now
            due = self.served[assignment_id] >= self.allowed[assignment_id]
            if assignment.status in (S.RESERVED, S.ANNOUNCED):
                assert not due, f"{assignment_id}'s reservation should have lapsed"
            elif assignment.kind is K.DELIVERY and assignment.status is S.DEPOSITED:
                assert assignment.compartment_id is not None
                if self.locker.compartments[assignment.compartment_id].in_service:
                    assert not due, f"{assignment_id}'s hold period should have run out"

    def _authenticate(self, code: str) -> Credential | None:
        """authenticate is a query: whatever it answers, it changes nothing."""
        before = snapshot(self.locker)
        try:
            credential = self.locker.authenticate(code, now=self.now)
        except DomainError:
            credential = None
        assert snapshot(self.locker) == before, "authenticate changed state"
        if credential is not None:
            self.credentials_seen.append((credential, code))
        return credential

    def _check_opened_by_code(
        self, events: list[DomainEvent], kind: CredentialKind, code: str
    ) -> None:
        """Every door a code opens holds assignments created with exactly that code."""
        requests = [e for e in events if e.type == "unlock_requested"]
        assert requests
        assert len({e.compartment_id for e in requests}) == len(requests)
        for request in requests:
            assert request.compartment_id is not None
            opened_for = set(request.data["assignment_ids"])  # type: ignore[call-overload]
            assert opened_for, f"{code!r} opened {request.compartment_id} for nothing"
            held = self.locker.compartments[request.compartment_id].assignment_ids
            assert opened_for <= held
            for assignment_id in opened_for:
                assert self.code_of[assignment_id] == (kind, code), (
                    f"{code!r} opened {request.compartment_id} for {assignment_id}, "
                    f"which was created with {self.code_of[assignment_id]}"
                )

    def _must_refuse_finished(self, assignment_id: str, events: list[DomainEvent] | None) -> None:
        if assignment_id in self.terminal:
            assert events is None, f"{assignment_id} is {self.terminal[assignment_id]} yet moved"

    def _live(self, kind: AssignmentKind, status: S) -> bool:
        return any(a.kind is kind and a.status is status for a in self.locker.assignments.values())

    def _holding(self, kind: AssignmentKind, status: S) -> set[str]:
        return {
            a.compartment_id
            for a in self.locker.assignments.values()
            if a.kind is kind and a.status is status and a.compartment_id is not None
        }

    # ----------------------------------------------------------- input choices

    def _new_id(self, data: st.DataObject) -> str:
        unused = [i for i in ID_POOL if i not in self.kind_of]
        if unused and data.draw(mostly, label="unused id"):
            return data.draw(st.sampled_from(unused), label="assignment_id")
        return data.draw(ids, label="assignment_id")

    def _assignment_id(self, data: st.DataObject, *wanted: tuple[AssignmentKind, S]) -> str:
        live = sorted(
            a.id
            for a in self.locker.assignments.values()
            if not wanted or (a.kind, a.status) in wanted
        )
        if live and data.draw(mostly, label="live assignment"):
            return data.draw(st.sampled_from(live), label="assignment_id")
        return data.draw(ids, label="assignment_id")

    def _compartment_id(self, data: st.DataObject, likely: set[str]) -> str:
        if likely and data.draw(mostly, label="likely compartment"):
            return data.draw(st.sampled_from(sorted(likely)), label="compartment_id")
        return data.draw(compartment_ids, label="compartment_id")

    def _code_for(self, data: st.DataObject, customer: str | None, codes: list[str]) -> str:
        """Usually the customer's own code (so parcels share codes); sometimes anyone's."""
        if customer is not None and data.draw(mostly, label="customer's own code"):
            return codes[CUSTOMERS.index(customer) % len(codes)]
        return data.draw(st.sampled_from(codes), label="code")

    def _live_code(self, data: st.DataObject) -> str:
        """Usually a code that should open something now; otherwise any code at all."""
        live = sorted(
            {
                self.code_of[a.id][1]
                for a in self.locker.assignments.values()
                if (a.kind, a.status) in ((K.DELIVERY, S.DEPOSITED), (K.RETURN, S.ANNOUNCED))
            }
        )
        if live and data.draw(mostly, label="live code"):
            return data.draw(st.sampled_from(live), label="code")
        return data.draw(any_code, label="code")

    # -------------------------------------------------------------------- rules

    @initialize(
        parcels=st.lists(
            st.tuples(customers, sizes, durations, st.booleans()), max_size=5
        ),
        returns=st.lists(st.tuples(customers, sizes), max_size=2),
    )
    def a_locker_in_use(
        self,
        parcels: list[tuple[str | None, str, float, bool]],
        returns: list[tuple[str | None, str]],
    ) -> None:
        """Start from a locker already in use: some parcels reserved, some deposited, some
        returns announced, all through the ordinary transitions (and checked like any step)."""
        for n, (customer, size, hold, deposit) in enumerate(parcels):
            assignment_id = ID_POOL[n]
            code = PICKUP_CODES[CUSTOMERS.index(customer)] if customer else PICKUP_CODES[-1]
            self._later()
            events = self._do(
                lambda: self.locker.reserve(
                    assignment_id,  # noqa: B023 -- called at once
                    pickup_code=code,  # noqa: B023
                    now=self.now,
                    hold_seconds=hold,  # noqa: B023
                    reservation_ttl_s=7200.0,
                    size=size,  # noqa: B023
                    customer_ref=customer,  # noqa: B023
                )
            )
            if events is None:
                continue
            self.code_of[assignment_id] = (CredentialKind.PICKUP, code)
            self.kind_of[assignment_id] = K.DELIVERY
            self._start_deadline(assignment_id, 7200.0)
            if deposit:
                (request,) = events
                assert request.compartment_id is not None
                self._do(
                    lambda: self.locker.begin_deposit(
                        assignment_id, actor="courier-7", now=self.now  # noqa: B023
                    )
                )
                self._door(request.compartment_id, DoorState.OPEN)
                self._door(request.compartment_id, DoorState.CLOSED)
        for n, (customer, size) in enumerate(returns, start=len(parcels)):
            assignment_id = ID_POOL[n]
            code = RETURN_CODES[CUSTOMERS.index(customer)] if customer else RETURN_CODES[-1]
            self._later()
            if self._do(
                lambda: self.locker.announce_return(
                    assignment_id,  # noqa: B023
                    size=size,  # noqa: B023
                    return_code=code,  # noqa: B023
                    now=self.now,
                    ttl_s=7200.0,
                    customer_ref=customer,  # noqa: B023
                )
            ):
                self.code_of[assignment_id] = (CredentialKind.RETURN, code)
                self.kind_of[assignment_id] = K.RETURN
                self._start_deadline(assignment_id, 7200.0)

    @rule(
        data=st.data(),
        customer=customers,
        size=sizes,
        compartment_id=st.one_of(st.none(), st.none(), st.none(), compartment_ids),
        accessible=st.sampled_from([False, False, False, True]),
        hold=durations,
        ttl=durations,
        flaw=flaws,
        hold_compartment=mostly,
    )
    def reserve(
        self,
        data: st.DataObject,
        customer: str | None,
        size: str | None,
        compartment_id: str | None,
        accessible: bool,
        hold: float,
        ttl: float,
        flaw: str | None,
        hold_compartment: bool,
    ) -> None:
        self._later()
        assignment_id = "" if flaw == "id" else self._new_id(data)
        code = self._code_for(data, customer, PICKUP_CODES)
        if flaw in ("size", "no_size"):
            size = BAD[flaw]
        elif flaw == "duration":
            hold, ttl = (0.0, ttl) if data.draw(st.booleans(), label="bad hold") else (hold, 0.0)
        existed = assignment_id in self.kind_of
        events = self._do(
            lambda: self.locker.reserve(
                assignment_id,
                pickup_code=code,
                now=self.now,
                hold_seconds=hold,
                reservation_ttl_s=ttl,
                size=size,
                compartment_id=compartment_id,
                accessible=accessible,
                customer_ref=customer,
                hold_compartment=hold_compartment,
            )
        )
        if existed:
            assert events is None, f"{assignment_id} was created twice"
        if events is not None:
            self.code_of[assignment_id] = (CredentialKind.PICKUP, code)
            self.kind_of[assignment_id] = K.DELIVERY
            self._start_deadline(assignment_id, ttl)

    @rule(data=st.data(), customer=customers, size=sizes, ttl=durations, flaw=flaws)
    def announce_return(
        self, data: st.DataObject, customer: str | None, size: str, ttl: float, flaw: str | None
    ) -> None:
        self._later()
        assignment_id = "" if flaw == "id" else self._new_id(data)
        code = self._code_for(data, customer, RETURN_CODES)
        if flaw == "size":
            size = "XXL"
        elif flaw == "duration":
            ttl = 0.0
        existed = assignment_id in self.kind_of
        events = self._do(
            lambda: self.locker.announce_return(
                assignment_id,
                size=size,
                return_code=code,
                now=self.now,
                ttl_s=ttl,
                customer_ref=customer,
            )
        )
        if existed:
            assert events is None, f"{assignment_id} was created twice"
        if events is not None:
            self.code_of[assignment_id] = (CredentialKind.RETURN, code)
            self.kind_of[assignment_id] = K.RETURN
            self._start_deadline(assignment_id, ttl)

    @rule(data=st.data(), use=st.sampled_from(["as_issued", "as_issued", "pickup", "return"]))
    def keypad(self, data: st.DataObject, use: str) -> None:
        """A customer types a code: authenticate, then begin_pickup or begin_return_deposit.

        ``as_issued`` uses the credential for what its kind says; ``pickup`` and ``return``
        force one use whatever the kind. A quarter of the time a credential authenticated
        earlier is replayed instead, as a slow or malicious kiosk might.
        """
        self._later()
        if self.credentials_seen and not data.draw(mostly, label="fresh code"):
            credential, code = data.draw(st.sampled_from(self.credentials_seen), label="replay")
        else:
            code = self._live_code(data)
            found = self._authenticate(code)
            if found is None:
                return
            credential = found
        as_issued = credential.kind is not CredentialKind.RETURN
        as_pickup = use == "pickup" or (use == "as_issued" and as_issued)
        if as_pickup:
            events = self._do(lambda: self.locker.begin_pickup(credential, now=self.now))
            if events is not None:
                self._check_opened_by_code(events, CredentialKind.PICKUP, code)
        else:
            events = self._do(lambda: self.locker.begin_return_deposit(credential, now=self.now))
            if events is not None:
                self._check_opened_by_code(events, CredentialKind.RETURN, code)
                (request,) = events
                assert request.compartment_id is not None
                held = self.locker.compartments[request.compartment_id].assignment_ids
                assert held == set(request.data["assignment_ids"])  # type: ignore[call-overload]

    @rule(data=st.data(), actor=st.sampled_from(["courier-7", "courier-8"]))
    def courier_at_locker(self, data: st.DataObject, actor: str) -> None:
        """A courier at the locker: begin_deposit of a reserved parcel, begin_collect_return
        of a customer's return, or begin_reclaim of an expired parcel (mostly what there is
        work for; sometimes anything, on any id or compartment)."""
        self._later()
        work = {
            "deposit": self._live(K.DELIVERY, S.RESERVED),
            "collect": self._live(K.RETURN, S.DEPOSITED),
            "reclaim": self._live(K.DELIVERY, S.EXPIRED),
        }
        pending = sorted(k for k, v in work.items() if v)
        if pending and data.draw(mostly, label="work to do"):
            action = data.draw(st.sampled_from(pending), label="action")
        else:
            action = data.draw(st.sampled_from(sorted(work)), label="action")

        if action == "deposit":
            assignment_id = self._assignment_id(data, (K.DELIVERY, S.RESERVED))
            events = self._do(
                lambda: self.locker.begin_deposit(assignment_id, actor=actor, now=self.now)
            )
            self._must_refuse_finished(assignment_id, events)
            if events is not None:
                (request,) = events
                assert request.data["assignment_ids"] == [assignment_id]
                assignment = self.locker.assignments[assignment_id]
                assert request.compartment_id == assignment.compartment_id
            return

        kind, status = (K.RETURN, S.DEPOSITED) if action == "collect" else (K.DELIVERY, S.EXPIRED)
        compartment_id = self._compartment_id(data, self._holding(kind, status))
        collect = action == "collect"
        begin = self.locker.begin_collect_return if collect else self.locker.begin_reclaim
        events = self._do(lambda: begin(compartment_id, actor=actor, now=self.now))
        if events is not None:
            (request,) = events
            assert request.compartment_id == compartment_id
            opened_for: list[str] = request.data["assignment_ids"]  # type: ignore[assignment]
            assert opened_for
            for assignment_id in opened_for:
                assignment = self.locker.assignments[assignment_id]
                assert (assignment.kind, assignment.status) == (kind, status)
                assert assignment.compartment_id == compartment_id

    @rule(
        data=st.data(),
        problem=st.sampled_from(["doesnt_fit", "door_broken", "doesnt_fit", "wobbly"]),
    )
    def courier_reports_a_problem(self, data: st.DataObject, problem: str) -> None:
        """At an open deposit door: the parcel does not fit, or the door is broken."""
        self._later()
        deposits = sorted(
            cid for cid, i in self.locker.intents.items()
            if i.purpose is UnlockPurpose.DEPOSIT and i.assignment_ids
        )
        compartment_id = self._compartment_id(data, set(deposits))
        before = self.locker.intents.get(compartment_id)
        moving = sorted(before.assignment_ids) if before else []
        events = self._do(lambda: self.locker.redirect_deposit(
            compartment_id, problem=problem, actor="courier-7", now=self.now))
        note_path(f"redirect {'refused' if events is None else 'done'}")
        if events is None:
            return
        assert problem in ("doesnt_fit", "door_broken")
        (assignment_id,) = moving
        # the first door deposits nothing any more; the parcel is elsewhere or nowhere
        assert self.locker.intents[compartment_id].assignment_ids == frozenset()
        assert assignment_id not in self.locker.compartments[compartment_id].assignment_ids
        redirected = [e for e in events if e.type == "deposit_redirected"]
        assert len(redirected) == 1
        target = redirected[0].data.get("to")
        assignment = self.locker.assignments[assignment_id]
        assert assignment.status is S.RESERVED
        assert assignment.compartment_id == target
        if target is not None:
            intent = self.locker.intents[str(target)]
            assert intent.purpose is UnlockPurpose.DEPOSIT
            assert intent.assignment_ids == {assignment_id}
        if problem == "door_broken":
            assert not self.locker.compartments[compartment_id].in_service

    @rule(data=st.data())
    def customer_shows_a_signed_token(self, data: st.DataObject) -> None:
        """A verified pickup token for some parcel: only that customer's deposited parcels in
        that one compartment may open."""
        self._later()
        assignment_id = self._assignment_id(data, (K.DELIVERY, S.DEPOSITED))
        events = self._do(lambda: self.locker.begin_token_pickup(assignment_id, now=self.now))
        note_path(f"token pickup {'refused' if events is None else 'done'}")
        if events is None:
            return
        (request,) = events
        assignment = self.locker.assignments[assignment_id]
        assert assignment.status is S.DEPOSITED
        assert request.compartment_id == assignment.compartment_id
        opened_for: list[str] = request.data["assignment_ids"]  # type: ignore[assignment]
        assert assignment_id in opened_for
        for other in opened_for:
            parcel = self.locker.assignments[other]
            assert parcel.customer_ref == assignment.customer_ref
            assert parcel.status is S.DEPOSITED

    def _door(self, compartment_id: str, door: DoorState) -> None:
        """A door sensor report, checked against the unlock (if any) on that compartment."""
        self._later()
        intent = self.locker.intents.get(compartment_id)
        compartment = self.locker.compartments.get(compartment_id)
        was = compartment.door if compartment is not None else None
        opened_before = intent is not None and intent.door_opened
        events = self._do(lambda: self.locker.door_changed(compartment_id, door, now=self.now))
        if events is None or door is was:
            assert not events
            return
        types = [e.type for e in events]
        if door is DoorState.OPEN:
            if intent is not None:
                assert types == ["door_opened"]
                assert self.locker.intents[compartment_id].door_opened
            elif was is DoorState.CLOSED:
                assert types == ["door_forced"]  # opened with no unlock in progress
        if door is DoorState.CLOSED and opened_before:
            assert compartment_id not in self.locker.intents  # the unlock completed
        else:
            assert self.locker.intents.get(compartment_id) is intent  # nothing completed
            assert set(types) <= {"door_forced", "door_opened", "door_closed", "door_unknown"}

    @rule(
        data=st.data(),
        what=st.sampled_from(["open", "close", "open_and_close", "open_and_close", "any"]),
        door=st.sampled_from([DoorState.OPEN, DoorState.UNKNOWN, DoorState.CLOSED]),
    )
    def door(self, data: st.DataObject, what: str, door: DoorState) -> None:
        """Door sensors: open / close a door (mostly one being unlocked), or any report at all
        on any compartment (forced doors, glitches to unknown, repeats)."""
        unlocking = set(self.locker.intents)
        if what == "open":
            self._door(self._compartment_id(data, unlocking), DoorState.OPEN)
        elif what == "close":
            opened = {c.id for c in self.locker.compartments.values() if c.door is DoorState.OPEN}
            self._door(self._compartment_id(data, opened), DoorState.CLOSED)
        elif what == "open_and_close":
            compartment_id = self._compartment_id(data, unlocking)
            self._door(compartment_id, DoorState.OPEN)
            self._door(compartment_id, DoorState.CLOSED)
        else:
            self._door(data.draw(compartment_ids, label="compartment_id"), door)

    @precondition(lambda self: self.locker.intents)
    @rule(data=st.data(), pulse=mostly)
    def abandon_unlock_or_pulse(self, data: st.DataObject, pulse: bool) -> None:
        """The relay reports a pulse, or the door never opened and the unlock is abandoned."""
        self._later()
        compartment_id = self._compartment_id(data, set(self.locker.intents))
        if pulse:
            self._do(lambda: self.locker.record_pulse(compartment_id, now=self.now))
        else:
            self._do(lambda: self.locker.abandon_unlock(compartment_id, reason="jam", now=self.now))

    @precondition(lambda self: self.locker.assignments)
    @rule(
        data=st.data(),
        action=st.sampled_from(["cancel", "extend", "revoke_codes"]),
        seconds=st.sampled_from([600.0, 3600.0, 60.0, 0.0, -1.0]),
    )
    def sender_action(self, data: st.DataObject, action: str, seconds: float) -> None:
        """The cloud cancels a parcel or return, extends a hold, or revokes a parcel's codes."""
        self._later()
        movable = [(K.DELIVERY, S.RESERVED), (K.DELIVERY, S.DEPOSITED)]
        if action == "cancel":
            movable.append((K.RETURN, S.ANNOUNCED))
        assignment_id = self._assignment_id(data, *(movable if action != "revoke_codes" else ()))
        if action == "cancel":
            events = self._do(
                lambda: self.locker.cancel(assignment_id, reason="sender cancelled", now=self.now)
            )
            self._must_refuse_finished(assignment_id, events)
        elif action == "extend":
            events = self._do(
                lambda: self.locker.extend(assignment_id, seconds=seconds, now=self.now)
            )
            self._must_refuse_finished(assignment_id, events)
        else:
            self._do(lambda: self.locker.revoke_codes(assignment_id, now=self.now))

    @rule(
        action=st.sampled_from(["grant", "grant", "revoke", "operator_open"]),
        courier=st.sampled_from(["dhl", "ups", ""]),
        code=st.sampled_from(COURIER_CODES),
        valid_for=st.sampled_from([None, 3600.0, 60.0, -1.0]),
        compartment_id=compartment_ids,
        reason=reasons,
    )
    def staff(
        self,
        action: str,
        courier: str,
        code: str,
        valid_for: float | None,
        compartment_id: str,
        reason: str | None,
    ) -> None:
        """Grant a courier a code (until some time, or with no end), revoke a courier's codes,
        or let an operator open one compartment."""
        self._later()
        if action == "revoke":
            self._do(lambda: self.locker.revoke_courier(courier, now=self.now))
        elif action == "operator_open":
            self._do(
                lambda: self.locker.begin_operator_open(
                    compartment_id, actor="ops", reason=reason or "", now=self.now
                )
            )
        else:
            expires_at = None if valid_for is None else self.now + timedelta(seconds=valid_for)
            self._do(
                lambda: self.locker.grant_courier(
                    courier, code=code, expires_at=expires_at, now=self.now
                )
            )

    @rule(data=st.data(), whole_locker=st.sampled_from([False, False, False, True]))
    def set_service(self, data: st.DataObject, whole_locker: bool) -> None:
        """Take one compartment (mostly one holding something, or being opened) or the whole
        locker out of service, or back: mostly the opposite of what it is, sometimes the same
        again; sometimes with no reason, which taking it out needs."""
        self._later()
        reason = data.draw(reasons, label="reason")
        if whole_locker:
            in_service = data.draw(mostly, label="toggle") != self.locker.in_service
            self._do(
                lambda: self.locker.set_locker_service(
                    in_service=in_service, reason=reason, now=self.now
                )
            )
            return
        likely = set(self.locker.intents) | {
            c.id
            for c in self.locker.compartments.values()
            if c.assignment_ids or not c.in_service
        }
        compartment_id = self._compartment_id(data, likely)
        compartment = self.locker.compartments.get(compartment_id)
        was_in_service = compartment is None or compartment.in_service
        in_service = data.draw(mostly, label="toggle") != was_in_service
        self._do(
            lambda: self.locker.set_compartment_service(
                compartment_id, in_service=in_service, reason=reason, now=self.now
            )
        )

    @rule(seconds=elapsed)
    def tick(self, seconds: float) -> None:
        """Time passes: the service clock runs only while the locker is in service, and every
        reservation and hold runs out exactly when its service time is used up."""
        self._later(seconds)
        clock_before = self.locker.clock.seconds
        self._count_service_time(seconds)
        events = self._do(lambda: self.locker.tick(seconds, now=self.now))
        assert events is not None, "tick never refuses"
        expected = clock_before + seconds if self.locker.in_service else clock_before
        assert self.locker.clock.seconds == expected
        for event in events:
            assert event.type in ("expired", "reservation_lapsed")
            assert event.compartment_id not in self.locker.intents
        self._check_nothing_overdue()

    @rule()
    def take_changes(self) -> None:
        changes = take_changes(self.locker, self.archive)
        assert not self.locker.take_changes(), "everything was handed over"
        for credential in changes.credentials.values():
            for code in ALL_CODES:
                assert code not in repr(credential)

    # Hypothesis picks a rule per step without weights; the rules that move parcels along
    # get a second entry each, so deposits, pickups, expiries and returns happen often
    # within 40 steps instead of drowning among service toggles and courier grants.

    @rule()
    def a_door_cycles(self) -> None:
        """The door of the oldest unlock in progress opens and closes (if there is one)."""
        if self.locker.intents:
            compartment_id = min(self.locker.intents)
            self._door(compartment_id, DoorState.OPEN)
            self._door(compartment_id, DoorState.CLOSED)

    @rule(data=st.data())
    def keypad_again(self, data: st.DataObject) -> None:
        self.keypad(data, "as_issued")

    # --------------------------------------------------------------- invariants

    @invariant()
    def one_customer_per_compartment(self) -> None:
        for compartment in self.locker.compartments.values():
            customers = self.locker.customers_in(compartment.id)
            assert len(customers) <= 1, f"{compartment.id} holds parcels of {customers}"

    @invariant()
    def counts_and_states_agree_with_assignments(self) -> None:
        counts = self.locker.counts()
        assert sum(counts.values()) == len(SPEC)
        states = {cid: self.locker.state_of(cid) for cid in self.locker.compartments}
        tally = Counter(states.values())
        assert counts == {state: tally[state] for state in CS}
        for cid, state in states.items():
            compartment = self.locker.compartments[cid]
            held = [self.locker.assignments[a] for a in compartment.assignment_ids]
            assert all(not a.terminal for a in held), f"{cid} still holds finished work"
            statuses = {(a.kind, a.status) for a in held}
            assert (state is CS.OUT_OF_SERVICE) == (not compartment.in_service)
            if state is CS.FREE:
                assert not held
            elif state is CS.RESERVED:
                assert held
                assert statuses <= {(K.DELIVERY, S.RESERVED), (K.RETURN, S.ANNOUNCED)}
            elif state is CS.OCCUPIED:
                assert (K.DELIVERY, S.DEPOSITED) in statuses
            elif state is CS.EXPIRED:
                assert (K.DELIVERY, S.EXPIRED) in statuses
                assert (K.DELIVERY, S.DEPOSITED) not in statuses
            elif state is CS.RETURN_WAITING:
                assert (K.RETURN, S.DEPOSITED) in statuses
                assert not statuses & {(K.DELIVERY, S.DEPOSITED), (K.DELIVERY, S.EXPIRED)}
        free = self.locker.free_by_size()
        assert sum(free.values()) == sum(
            1 for cid, s in states.items() if s is CS.FREE and cid not in self.locker.intents
        )

    @invariant()
    def assignments_and_compartments_point_at_each_other(self) -> None:
        for assignment in self.locker.assignments.values():
            if assignment.terminal:
                # finished work keeps its compartment_id as history but sits in no compartment
                assert all(
                    assignment.id not in c.assignment_ids
                    for c in self.locker.compartments.values()
                ), f"finished {assignment.id} still sits in a compartment"
                continue
            if assignment.compartment_id is not None:
                compartment = self.locker.compartments[assignment.compartment_id]
                assert assignment.id in compartment.assignment_ids
            # only work nobody has brought yet may lack a compartment
            if assignment.status not in (S.ANNOUNCED, S.RESERVED):
                assert assignment.compartment_id is not None
        for compartment in self.locker.compartments.values():
            for assignment_id in compartment.assignment_ids:
                assert self.locker.assignments[assignment_id].compartment_id == compartment.id

    @invariant()
    def unlocks_wait_on_unmoved_assignments(self) -> None:
        for cid, intent in self.locker.intents.items():
            assert cid == intent.compartment_id
            if intent.purpose is UnlockPurpose.OPERATOR:
                assert not intent.assignment_ids
                continue
            if intent.purpose is UnlockPurpose.DEPOSIT and not intent.assignment_ids:
                continue  # a deposit redirected elsewhere: this door deposits nothing
            assert intent.assignment_ids
            assert intent.assignment_ids <= self.locker.compartments[cid].assignment_ids
            for assignment_id in intent.assignment_ids:
                assignment = self.locker.assignments[assignment_id]
                assert (assignment.kind, assignment.status) == INTENT_BEFORE[intent.purpose], (
                    f"{assignment_id} is {assignment.status} while {cid} is open "
                    f"for {intent.purpose}"
                )

    @invariant()
    def nothing_leaves_a_terminal_state(self) -> None:
        for assignment_id, assignment in self.locker.assignments.items():
            assert assignment.kind is self.kind_of[assignment_id]
            previous = self.last_status.get(assignment_id)
            if previous is not None and previous is not assignment.status:
                allowed = ALLOWED_MOVES.get((assignment.kind, previous), set())
                assert assignment.status in allowed, (
                    f"{assignment_id} moved {previous} -> {assignment.status}"
                )
            self.last_status[assignment_id] = assignment.status
            if assignment.status in TERMINAL_STATUSES:
                self.terminal.setdefault(assignment_id, assignment.status)
        for assignment_id in self.kind_of.keys() - self.locker.assignments.keys():
            # only finished work is forgotten, and the archive remembers how it ended
            assert assignment_id in self.terminal, f"{assignment_id} vanished unfinished"
            assert self.archive(assignment_id) is self.terminal[assignment_id]

    @invariant()
    def credentials_hold_only_digests(self) -> None:
        for credential in self.locker.credentials.values():
            assert len(credential.digest) == 64
            int(credential.digest, 16)
            text = repr(credential)
            for code in ALL_CODES:
                assert code not in text


# Runs with the loaded profile (see conftest.py): max_examples and stateful_step_count from it.
TestLockerInvariants = LockerMachine.TestCase
