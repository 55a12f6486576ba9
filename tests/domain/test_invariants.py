"""Stateful property test: random sequences of transitions never break the locker's invariants.

A Hypothesis state machine drives a six-compartment locker through every transition with
random (often wrong) codes, ids and compartments. Refusals (``DomainError``) are expected and
must change nothing; any other exception is a bug. After every step the invariants below hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

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

# Codes are distinctive strings (never hex, never a substring of an id, actor or reason), so
# finding one in an event or a repr can only mean it leaked.
PICKUP_CODES = ["PIN-Kilo-1", "PIN-Lima-2", "PIN-Mike-3", "PIN-Oscar-4"]
RETURN_CODES = ["RET-Papa-1", "RET-Quebec-2", "PIN-Kilo-1"]  # the last equals a pickup code
COURIER_CODES = ["CUR-Romeo-1", "CUR-Sierra-2", "PIN-Lima-2"]
WRONG_CODES = ["PIN-Zulu-9", ""]
ALL_CODES = sorted({*PICKUP_CODES, *RETURN_CODES, *COURIER_CODES, *WRONG_CODES} - {""})

ID_POOL = [f"a{i}" for i in range(8)]
ids = st.sampled_from([*ID_POOL, "ghost", ""])
customers = st.sampled_from(["alice", "bob", "carol", None])
compartment_ids = st.sampled_from([*COMPARTMENT_IDS, "c9"])
sizes = st.sampled_from(["S", "M", "L", "XL", "XXL"])
any_code = st.sampled_from(PICKUP_CODES + RETURN_CODES + COURIER_CODES + WRONG_CODES)
durations = st.sampled_from([600.0, 3600.0, 30.0, 7200.0, 0.0])
elapsed = st.sampled_from([0.0, 1.0, 30.0, 300.0, 600.0, 3600.0])
reasons = st.sampled_from(["hinge", "audit", None, ""])
mostly = st.integers(0, 3).map(bool)  # True three times in four

# Every status an assignment may move to from the one before (a step moves it at most once).
ALLOWED_MOVES = {
    (K.DELIVERY, S.RESERVED): {S.DEPOSITED, S.CANCELLED},
    (K.DELIVERY, S.DEPOSITED): {S.PICKED_UP, S.EXPIRED},
    (K.DELIVERY, S.EXPIRED): {S.RECLAIMED},
    (K.RETURN, S.ANNOUNCED): {S.DEPOSITED, S.CANCELLED},
    (K.RETURN, S.DEPOSITED): {S.COLLECTED},
}

# What an intent waits for: its assignments stay in this status until the door closes.
INTENT_BEFORE = {
    UnlockPurpose.PICKUP: S.DEPOSITED,
    UnlockPurpose.DEPOSIT: S.RESERVED,
    UnlockPurpose.RETURN_DEPOSIT: S.ANNOUNCED,
    UnlockPurpose.RETURN_COLLECT: S.DEPOSITED,
    UnlockPurpose.RECLAIM: S.EXPIRED,
}


class LockerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.archive = Archive()
        self.locker: Locker = make_locker(SPEC, self.archive)
        self.now = T0
        # the model: which code each assignment was created with, and what became of it
        self.code_of: dict[str, tuple[CredentialKind, str]] = {}
        self.kind_of: dict[str, AssignmentKind] = {}
        self.last_status: dict[str, AssignmentStatus] = {}
        self.terminal: dict[str, AssignmentStatus] = {}
        self.credentials_seen: list[tuple[Credential, str]] = []

    # ------------------------------------------------------------------ helpers

    def _tick_now(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)

    def _do(self, action: Callable[[], list[DomainEvent]]) -> list[DomainEvent] | None:
        """Run a transition: a refusal must change nothing, a success is checked event by event."""
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
            moved = {event.assignment_id} | set(event.data.get("assignment_ids", ()))  # type: ignore[call-overload]
            if event.type != "code_revoked":
                done = moved & self.terminal.keys()
                assert not done, f"{event.type} touched finished assignments {done}"

    def _authenticate(self, code: str) -> Credential | None:
        before = snapshot(self.locker)
        try:
            credential = self.locker.authenticate(code, now=self.now)
        except DomainError:
            assert snapshot(self.locker) == before, "a refused code changed state"
            return None
        assert snapshot(self.locker) == before, "authenticate changed state"
        self.credentials_seen.append((credential, code))
        return credential

    def _check_opened_by_code(
        self, events: list[DomainEvent], kind: CredentialKind, code: str
    ) -> None:
        """Every door a code opens holds an assignment created with exactly that code."""
        requests = [e for e in events if e.type == "unlock_requested"]
        assert requests
        for request in requests:
            assert request.compartment_id is not None
            opened_for = set(request.data["assignment_ids"])  # type: ignore[call-overload]
            assert opened_for
            held = self.locker.compartments[request.compartment_id].assignment_ids
            assert opened_for <= held
            for assignment_id in opened_for:
                assert self.code_of[assignment_id] == (kind, code), (
                    f"{code!r} opened {request.compartment_id} for {assignment_id}, "
                    f"created with {self.code_of[assignment_id]}"
                )

    def _must_refuse_finished(self, assignment_id: str, events: list[DomainEvent] | None) -> None:
        if assignment_id in self.terminal:
            assert events is None, f"{assignment_id} is {self.terminal[assignment_id]} yet moved"

    # -------------------------------------------------------------------- rules

    @rule(
        assignment_id=ids,
        customer=customers,
        code=st.sampled_from(PICKUP_CODES),
        size=st.one_of(sizes, st.none()),
        compartment_id=st.one_of(st.none(), st.none(), compartment_ids),
        accessible=st.booleans(),
        hold=durations,
        ttl=durations,
    )
    def reserve(
        self,
        assignment_id: str,
        customer: str | None,
        code: str,
        size: str | None,
        compartment_id: str | None,
        accessible: bool,
        hold: float,
        ttl: float,
    ) -> None:
        self._tick_now()
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
            )
        )
        if existed:
            assert events is None, f"{assignment_id} was created twice"
        if events is not None:
            self.code_of[assignment_id] = (CredentialKind.PICKUP, code)
            self.kind_of[assignment_id] = K.DELIVERY

    @rule(
        assignment_id=ids,
        customer=customers,
        code=st.sampled_from(RETURN_CODES),
        size=sizes,
        ttl=durations,
    )
    def announce_return(
        self, assignment_id: str, customer: str | None, code: str, size: str, ttl: float
    ) -> None:
        self._tick_now()
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

    @rule(code=any_code)
    def pickup(self, code: str) -> None:
        self._tick_now()
        credential = self._authenticate(code)
        if credential is None:
            return
        events = self._do(lambda: self.locker.begin_pickup(credential, now=self.now))
        if events is not None:
            self._check_opened_by_code(events, CredentialKind.PICKUP, code)

    @rule(code=any_code)
    def return_deposit(self, code: str) -> None:
        self._tick_now()
        credential = self._authenticate(code)
        if credential is None:
            return
        events = self._do(lambda: self.locker.begin_return_deposit(credential, now=self.now))
        if events is not None:
            self._check_opened_by_code(events, CredentialKind.RETURN, code)
            (request,) = events
            assert request.compartment_id is not None
            held = self.locker.compartments[request.compartment_id].assignment_ids
            assert held == set(request.data["assignment_ids"])  # type: ignore[call-overload]

    @rule(data=st.data())
    def replay_credential(self, data: st.DataObject) -> None:
        """Use a credential object authenticated earlier, as a slow kiosk might."""
        if not self.credentials_seen:
            return
        self._tick_now()
        credential, code = data.draw(st.sampled_from(self.credentials_seen))
        pickup = data.draw(st.booleans())
        if pickup:
            events = self._do(lambda: self.locker.begin_pickup(credential, now=self.now))
            if events is not None:
                self._check_opened_by_code(events, CredentialKind.PICKUP, code)
        else:
            events = self._do(lambda: self.locker.begin_return_deposit(credential, now=self.now))
            if events is not None:
                self._check_opened_by_code(events, CredentialKind.RETURN, code)

    @rule(assignment_id=ids, actor=st.sampled_from(["courier-7", "courier-8"]))
    def begin_deposit(self, assignment_id: str, actor: str) -> None:
        self._tick_now()
        events = self._do(
            lambda: self.locker.begin_deposit(assignment_id, actor=actor, now=self.now)
        )
        self._must_refuse_finished(assignment_id, events)
        if events is not None:
            (request,) = events
            assert request.data["assignment_ids"] == [assignment_id]
            assert request.compartment_id == self.locker.assignments[assignment_id].compartment_id

    @rule(compartment_id=compartment_ids)
    def begin_collect_return(self, compartment_id: str) -> None:
        self._tick_now()
        events = self._do(
            lambda: self.locker.begin_collect_return(
                compartment_id, actor="courier-7", now=self.now
            )
        )
        if events is not None:
            for assignment_id in events[0].data["assignment_ids"]:  # type: ignore[attr-defined]
                assignment = self.locker.assignments[assignment_id]
                assert (assignment.kind, assignment.status) == (K.RETURN, S.DEPOSITED)

    @rule(compartment_id=compartment_ids)
    def begin_reclaim(self, compartment_id: str) -> None:
        self._tick_now()
        events = self._do(
            lambda: self.locker.begin_reclaim(compartment_id, actor="courier-7", now=self.now)
        )
        if events is not None:
            for assignment_id in events[0].data["assignment_ids"]:  # type: ignore[attr-defined]
                assignment = self.locker.assignments[assignment_id]
                assert (assignment.kind, assignment.status) == (K.DELIVERY, S.EXPIRED)

    @rule(compartment_id=compartment_ids, reason=reasons)
    def operator_open(self, compartment_id: str, reason: str | None) -> None:
        self._tick_now()
        self._do(
            lambda: self.locker.begin_operator_open(
                compartment_id, actor="ops", reason=reason or "", now=self.now
            )
        )

    @rule(compartment_id=compartment_ids)
    def record_pulse(self, compartment_id: str) -> None:
        self._tick_now()
        self._do(lambda: self.locker.record_pulse(compartment_id, now=self.now))

    @rule(
        compartment_id=compartment_ids,
        door=st.sampled_from([DoorState.OPEN, DoorState.CLOSED, DoorState.UNKNOWN]),
    )
    def door(self, compartment_id: str, door: DoorState) -> None:
        self._tick_now()
        had_intent = compartment_id in self.locker.intents
        was = self.locker.compartments.get(compartment_id)
        was_door = was.door if was is not None else None
        events = self._do(lambda: self.locker.door_changed(compartment_id, door, now=self.now))
        if events and door is DoorState.OPEN and not had_intent and was_door is DoorState.CLOSED:
            assert [e.type for e in events] == ["door_forced"]

    @rule(compartment_id=compartment_ids, reason=st.sampled_from(["jam", "timeout"]))
    def abandon_unlock(self, compartment_id: str, reason: str) -> None:
        self._tick_now()
        self._do(lambda: self.locker.abandon_unlock(compartment_id, reason=reason, now=self.now))

    @rule(assignment_id=ids)
    def cancel(self, assignment_id: str) -> None:
        self._tick_now()
        events = self._do(
            lambda: self.locker.cancel(assignment_id, reason="sender cancelled", now=self.now)
        )
        self._must_refuse_finished(assignment_id, events)

    @rule(assignment_id=ids, seconds=st.sampled_from([0.0, -1.0, 60.0, 3600.0]))
    def extend(self, assignment_id: str, seconds: float) -> None:
        self._tick_now()
        events = self._do(lambda: self.locker.extend(assignment_id, seconds=seconds, now=self.now))
        self._must_refuse_finished(assignment_id, events)

    @rule(assignment_id=ids)
    def revoke_codes(self, assignment_id: str) -> None:
        self._tick_now()
        self._do(lambda: self.locker.revoke_codes(assignment_id, now=self.now))

    @rule(
        courier=st.sampled_from(["dhl", "ups", ""]),
        code=st.sampled_from(COURIER_CODES),
        valid_for=st.sampled_from([None, -1.0, 60.0, 3600.0]),
    )
    def grant_courier(self, courier: str, code: str, valid_for: float | None) -> None:
        self._tick_now()
        expires_at = None if valid_for is None else self.now + timedelta(seconds=valid_for)
        self._do(
            lambda: self.locker.grant_courier(
                courier, code=code, expires_at=expires_at, now=self.now
            )
        )

    @rule(courier=st.sampled_from(["dhl", "ups"]))
    def revoke_courier(self, courier: str) -> None:
        self._tick_now()
        self._do(lambda: self.locker.revoke_courier(courier, now=self.now))

    @rule(compartment_id=compartment_ids, in_service=st.booleans(), reason=reasons)
    def set_compartment_service(
        self, compartment_id: str, in_service: bool, reason: str | None
    ) -> None:
        self._tick_now()
        self._do(
            lambda: self.locker.set_compartment_service(
                compartment_id, in_service=in_service, reason=reason, now=self.now
            )
        )

    @rule(in_service=st.booleans(), reason=reasons)
    def set_locker_service(self, in_service: bool, reason: str | None) -> None:
        self._tick_now()
        self._do(
            lambda: self.locker.set_locker_service(
                in_service=in_service, reason=reason, now=self.now
            )
        )

    @rule(seconds=elapsed)
    def tick(self, seconds: float) -> None:
        self._tick_now(seconds)
        clock_before = self.locker.clock.seconds
        events = self._do(lambda: self.locker.tick(seconds, now=self.now))
        assert events is not None  # tick never refuses
        expected = clock_before + seconds if self.locker.in_service else clock_before
        assert self.locker.clock.seconds == expected
        for event in events:
            assert event.type in ("expired", "reservation_lapsed")
            assert event.compartment_id not in self.locker.intents

    @rule()
    def take_changes(self) -> None:
        changes = take_changes(self.locker, self.archive)
        assert not self.locker.take_changes()  # everything was handed over
        for credential in changes.credentials.values():
            for code in ALL_CODES:
                assert code not in repr(credential)

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
        assert counts == {state: Counter(states.values())[state] for state in CS}
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
                assert {s for _, s in statuses} <= {S.RESERVED, S.ANNOUNCED}
            elif state is CS.OCCUPIED:
                assert (K.DELIVERY, S.DEPOSITED) in statuses
            elif state is CS.EXPIRED:
                assert (K.DELIVERY, S.EXPIRED) in statuses
                assert (K.DELIVERY, S.DEPOSITED) not in statuses
            elif state is CS.RETURN_WAITING:
                assert (K.RETURN, S.DEPOSITED) in statuses
                assert not {S.EXPIRED} & {s for _, s in statuses}
        free = self.locker.free_by_size()
        assert sum(free.values()) == sum(
            1 for cid, s in states.items() if s is CS.FREE and cid not in self.locker.intents
        )

    @invariant()
    def assignments_and_compartments_point_at_each_other(self) -> None:
        for assignment in self.locker.assignments.values():
            if assignment.terminal:
                assert all(
                    assignment.id not in c.assignment_ids
                    for c in self.locker.compartments.values()
                ), f"finished {assignment.id} still sits in a compartment"
                continue
            if assignment.compartment_id is not None:
                compartment = self.locker.compartments[assignment.compartment_id]
                assert assignment.id in compartment.assignment_ids
            if assignment.kind is K.DELIVERY or assignment.status is S.DEPOSITED:
                assert assignment.compartment_id is not None
        for compartment in self.locker.compartments.values():
            for assignment_id in compartment.assignment_ids:
                assert self.locker.assignments[assignment_id].compartment_id == compartment.id

    @invariant()
    def intents_wait_on_unmoved_assignments(self) -> None:
        for cid, intent in self.locker.intents.items():
            assert cid == intent.compartment_id
            if intent.purpose is UnlockPurpose.OPERATOR:
                assert not intent.assignment_ids
                continue
            held = self.locker.compartments[cid].assignment_ids
            assert intent.assignment_ids <= held
            for assignment_id in intent.assignment_ids:
                status = self.locker.assignments[assignment_id].status
                assert status is INTENT_BEFORE[intent.purpose], (
                    f"{assignment_id} became {status} while {cid} was open "
                    f"for {intent.purpose}"
                )

    @invariant()
    def nothing_leaves_a_terminal_state(self) -> None:
        for assignment_id, assignment in self.locker.assignments.items():
            previous = self.last_status.get(assignment_id)
            if previous is not None and previous is not assignment.status:
                allowed = ALLOWED_MOVES.get((assignment.kind, previous), set())
                assert assignment.status in allowed, (
                    f"{assignment_id} moved {previous} -> {assignment.status}"
                )
            self.last_status[assignment_id] = assignment.status
            if assignment.status in TERMINAL_STATUSES:
                self.terminal.setdefault(assignment_id, assignment.status)
            assert assignment.kind is self.kind_of[assignment_id]
        for assignment_id in self.kind_of.keys() - self.locker.assignments.keys():
            # only finished work is forgotten, and the archive remembers how it ended
            assert assignment_id in self.terminal, f"{assignment_id} vanished unfinished"
            assert self.archive(assignment_id) is self.terminal[assignment_id]

    @invariant()
    def credentials_hold_only_digests(self) -> None:
        for credential in self.locker.credentials.values():
            assert len(credential.digest) == 64
            int(credential.digest, 16)
            for code in ALL_CODES:
                assert code not in repr(credential)


# Runs with the loaded profile (see conftest.py): max_examples and stateful_step_count from it.
TestLockerInvariants = LockerMachine.TestCase
