"""The Store against real SQLite files: loading, committing, the outbox and the audit trail."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import Connection, text

from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.errors import DomainError, DuplicateAssignment
from locker_agent.domain.locker import Changes, Locker
from locker_agent.domain.model import (
    DEFAULT_SIZES,
    AssignmentStatus,
    Compartment,
    CredentialKind,
    DomainEvent,
    DoorState,
    UnlockPurpose,
)
from locker_agent.store import Store, StoredEvent, StoreError

SECRET = b"locker-agent/tests/store-secret!"
assert len(SECRET) == 32

LOCKER_ID = "locker-7"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))

Spec = Sequence[tuple[str, str, bool]]
SPEC: Spec = (("A1", "S", False), ("A2", "M", False), ("A3", "L", True))

# Codes with letters outside [0-9a-f], so they cannot turn up by chance in hex digests or uuids.
CODE_P1 = "KQ7-ZP3-MX"
CODE_P2 = "WR8-TY4-NV"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def compartments(spec: Spec = SPEC) -> list[Compartment]:
    return [Compartment(id=cid, size=size, accessible=acc) for cid, size, acc in spec]


def open_store(path: Path) -> Store:
    store = Store(path)
    store.migrate()
    return store


def load(
    store: Store,
    *,
    locker_id: str = LOCKER_ID,
    spec: Spec = SPEC,
    read_only: bool = False,
) -> Locker:
    return store.load(
        locker_id, compartments(spec), CodeHasher(SECRET), sizes=DEFAULT_SIZES,
        read_only=read_only,
    )


def reload(path: Path, **kwargs: Any) -> Locker:
    """The locker as a freshly started agent would see it: a new Store on the same file."""
    store = Store(path)
    try:
        return load(store, **kwargs)
    finally:
        store.close()


def state(locker: Locker) -> dict[str, Any]:
    return {
        "locker_id": locker.locker_id,
        "out_of_service_reason": locker.out_of_service_reason,
        "clock": locker.clock.seconds,
        "compartments": locker.compartments,
        "assignments": locker.assignments,
        "credentials": locker.credentials,
        "intents": locker.intents,
    }


def count(store: Store, table: str) -> int:
    return int(store.execute_sql(f"SELECT count(*) FROM {table}")[0][0])


def counts(store: Store) -> dict[str, int]:
    tables = [
        "locker", "compartment", "assignment", "credential", "credential_assignment",
        "unlock_intent", "outbox", "audit",
    ]
    return {t: count(store, t) for t in tables}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = open_store(db_path)
    yield s
    s.close()


def reserve(
    locker: Locker,
    assignment_id: str,
    code: str,
    now: datetime,
    *,
    size: str = "S",
    customer_ref: str | None = None,
) -> list[DomainEvent]:
    return locker.reserve(
        assignment_id, pickup_code=code, now=now, hold_seconds=3600, reservation_ttl_s=600,
        size=size, customer_ref=customer_ref,
    )


# ------------------------------------------------------------------------ loading


def test_load_on_a_new_file_creates_the_locker_and_its_compartments(store: Store) -> None:
    locker = load(store)

    assert store.execute_sql("SELECT id, locker_id, service_seconds FROM locker") == [
        (1, LOCKER_ID, 0.0)
    ]
    assert store.execute_sql(
        "SELECT id, position, size, accessible, out_of_service_reason, door"
        " FROM compartment ORDER BY position"
    ) == [
        ("A1", 0, "S", 0, None, "unknown"),
        ("A2", 1, "M", 0, None, "unknown"),
        ("A3", 2, "L", 1, None, "unknown"),
    ]
    assert list(locker.compartments) == ["A1", "A2", "A3"]
    assert locker.locker_id == LOCKER_ID
    assert locker.clock.seconds == 0
    assert locker.assignments == {} and locker.credentials == {} and locker.intents == {}


def test_load_adds_compartments_new_in_the_config(db_path: Path, store: Store) -> None:
    load(store)
    bigger = (*SPEC, ("B1", "XL", True))

    locker = reload(db_path, spec=bigger)

    assert "B1" in locker.compartments
    assert store.execute_sql("SELECT id, position, size FROM compartment WHERE id = 'B1'") == [
        ("B1", 3, "XL")
    ]


def test_full_lifecycle_survives_a_reload_after_every_step(db_path: Path, store: Store) -> None:
    locker = load(store)

    def step(events: list[DomainEvent]) -> list[StoredEvent]:
        stored = store.commit(locker, events)
        again = reload(db_path)
        assert state(again) == state(locker)
        return stored

    step(reserve(locker, "P1", CODE_P1, at(0), size="S"))
    step(reserve(locker, "P2", CODE_P2, at(1), size="M"))
    step(locker.tick(30, now=at(2)))
    step(locker.begin_deposit("P1", actor="courier-9", now=at(3)))
    assert locker.intents["A1"].purpose is UnlockPurpose.DEPOSIT
    step(locker.door_changed("A1", DoorState.OPEN, now=at(4)))
    assert locker.intents["A1"].door_opened
    step(locker.door_changed("A1", DoorState.CLOSED, now=at(5)))
    assert locker.assignments["P1"].status is AssignmentStatus.DEPOSITED
    assert locker.assignments["P1"].hold_deadline == 30 + 3600
    step(locker.tick(12.5, now=at(6)))
    credential = locker.authenticate(CODE_P1, now=at(7), kinds=[CredentialKind.PICKUP])
    step(locker.begin_pickup(credential, now=at(7)))
    assert locker.credentials[credential.id].used_at == at(7)
    step(locker.door_changed("A1", DoorState.OPEN, now=at(8)))
    step(locker.door_changed("A1", DoorState.CLOSED, now=at(9)))

    again = reload(db_path)
    assert "P1" not in again.assignments
    assert "P1" not in again.compartments["A1"].assignment_ids
    assert credential.id not in again.credentials
    assert again.compartments["A1"].door is DoorState.CLOSED
    assert again.compartments["A2"].assignment_ids == {"P2"}
    assert again.assignments["P2"].status is AssignmentStatus.RESERVED
    assert again.clock.seconds == 42.5
    assert again.intents == {}
    assert store.archived_status("P1") is AssignmentStatus.PICKED_UP
    assert store.archived_status("nope") is None
    assert [a.id for a in store.assignments()] == ["P1", "P2"]
    # the finished parcel's code is dead on file, not just in memory
    assert store.execute_sql(
        f"SELECT live, used_at IS NOT NULL FROM credential WHERE id = '{credential.id}'"
    ) == [(0, 1)]
    assert [e.type for e in store.all_events()] == [
        "reserved", "reserved", "unlock_requested", "door_opened", "door_closed", "deposited",
        "unlock_requested", "door_opened", "door_closed", "picked_up",
    ]

    with pytest.raises(DuplicateAssignment, match="picked_up"):
        reserve(again, "P1", "NEW-CODE-ZZ", at(10))
    assert not again.has_changes


def test_a_pending_unlock_intent_survives_a_reload_and_completes(
    db_path: Path, store: Store
) -> None:
    locker = load(store)
    store.commit(locker, reserve(locker, "P1", CODE_P1, at(0), size="M"))
    store.commit(locker, locker.begin_deposit("P1", actor="courier-9", now=at(1).astimezone(CEST)))
    store.commit(
        locker, locker.begin_operator_open("A3", actor="op-1", reason="cleaning", now=at(2))
    )
    store.commit(locker, locker.door_changed("A3", DoorState.OPEN, now=at(3)))
    store.close()

    second = Store(db_path)
    try:
        again = load(second)
        assert again.intents == locker.intents
        deposit = again.intents["A2"]
        assert deposit.purpose is UnlockPurpose.DEPOSIT
        assert deposit.actor == "courier-9"
        assert deposit.assignment_ids == frozenset({"P1"})
        assert deposit.requested_at == at(1)
        assert deposit.requested_at.tzinfo is not None
        assert not deposit.door_opened
        operator = again.intents["A3"]
        assert operator.reason == "cleaning" and operator.door_opened

        second.commit(again, again.door_changed("A2", DoorState.OPEN, now=at(4)))
        second.commit(again, again.door_changed("A2", DoorState.CLOSED, now=at(5)))
        second.commit(again, again.door_changed("A3", DoorState.CLOSED, now=at(6)))
    finally:
        second.close()

    final = reload(db_path)
    assert final.intents == {}
    assert final.assignments["P1"].status is AssignmentStatus.DEPOSITED
    assert final.compartments["A2"].door is DoorState.CLOSED


def test_service_state_and_paused_holds_survive_a_reload(db_path: Path, store: Store) -> None:
    locker = load(store)
    store.commit(locker, reserve(locker, "P1", CODE_P1, at(0)))
    store.commit(locker, locker.begin_deposit("P1", actor="c", now=at(1)))
    store.commit(locker, locker.door_changed("A1", DoorState.OPEN, now=at(2)))
    store.commit(locker, locker.door_changed("A1", DoorState.CLOSED, now=at(3)))
    store.commit(locker, locker.tick(100, now=at(4)))
    store.commit(
        locker,
        locker.set_compartment_service("A1", in_service=False, reason="hinge", now=at(5)),
    )
    store.commit(locker, locker.set_locker_service(in_service=False, reason="flood", now=at(6)))

    again = reload(db_path)

    assert state(again) == state(locker)
    assert again.out_of_service_reason == "flood"
    assert again.compartments["A1"].out_of_service_reason == "hinge"
    assert again.assignments["P1"].paused_at == 100


def test_save_clock_persists_the_service_clock(db_path: Path, store: Store) -> None:
    locker = load(store)
    assert locker.tick(77.25, now=at(1)) == []

    store.save_clock(locker)

    assert reload(db_path).clock.seconds == 77.25


def test_courier_and_return_credentials_survive_a_reload(db_path: Path, store: Store) -> None:
    locker = load(store)
    store.commit(
        locker, locker.grant_courier("courier-9", code="CRR-XYZx", expires_at=at(600), now=at(0))
    )
    store.commit(
        locker,
        locker.announce_return("R1", size="S", return_code="RTN-QWZx", now=at(1), ttl_s=900),
    )

    again = reload(db_path)

    assert again.credentials == locker.credentials
    courier = again.authenticate("CRR-XYZx", now=at(2), kinds=[CredentialKind.COURIER])
    assert courier.courier_id == "courier-9"
    assert courier.expires_at == at(600)
    assert not courier.single_use
    returned = again.authenticate("RTN-QWZx", now=at(2), kinds=[CredentialKind.RETURN])
    assert returned.assignment_ids == frozenset({"R1"})


def test_load_with_another_locker_id_is_refused(db_path: Path, store: Store) -> None:
    load(store)

    with pytest.raises(StoreError) as info:
        reload(db_path, locker_id="locker-8")

    message = str(info.value)
    assert LOCKER_ID in message and "locker-8" in message
    assert store.execute_sql("SELECT locker_id FROM locker") == [(LOCKER_ID,)]


def test_removing_a_compartment_that_holds_a_parcel_is_refused(
    db_path: Path, store: Store
) -> None:
    locker = load(store)
    store.commit(locker, reserve(locker, "P1", CODE_P1, at(0), size="M"))
    store.commit(locker, reserve(locker, "P3", "PPP-QQQ-RR", at(0), size="L"))
    assert locker.assignments["P1"].compartment_id == "A2"
    assert locker.assignments["P3"].compartment_id == "A3"

    with pytest.raises(StoreError) as info:
        reload(db_path, spec=[("A1", "S", False)])

    message = str(info.value)
    assert "A2" in message and "A3" in message
    assert "A1" not in message


def test_removing_an_empty_compartment_is_allowed(db_path: Path, store: Store) -> None:
    locker = load(store)
    store.commit(locker, reserve(locker, "P1", CODE_P1, at(0), size="S"))

    again = reload(db_path, spec=[("A1", "S", False), ("A2", "M", False)])

    assert list(again.compartments) == ["A1", "A2"]
    assert again.assignments["P1"].compartment_id == "A1"


def test_read_only_load_of_a_file_with_no_locker_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="no locker"):
        load(store, read_only=True)

    assert count(store, "locker") == 0
    assert count(store, "compartment") == 0


def _file_digests(path: Path) -> dict[str, str]:
    out = {}
    for suffix in ("", "-wal"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            out[suffix or "db"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_read_only_load_writes_nothing(db_path: Path, store: Store) -> None:
    locker = load(store)
    store.commit(locker, reserve(locker, "P1", CODE_P1, at(0)))
    rows_before = counts(store)
    compartments_before = store.execute_sql("SELECT * FROM compartment ORDER BY id")
    files_before = _file_digests(db_path)
    watcher = sqlite3.connect(db_path)
    try:
        version_before = watcher.execute("PRAGMA data_version").fetchone()[0]

        # a config that differs: A1 now accessible, a new compartment B1
        changed = (("A1", "S", True), ("A2", "M", False), ("A3", "L", True), ("B1", "XL", False))
        reader = Store(db_path)
        try:
            seen = load(reader, spec=changed, read_only=True)
        finally:
            reader.close()

        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version_before
    finally:
        watcher.close()

    assert seen.assignments == locker.assignments
    assert seen.credentials == locker.credentials
    assert counts(store) == rows_before
    assert store.execute_sql("SELECT * FROM compartment ORDER BY id") == compartments_before
    assert _file_digests(db_path) == files_before


# --------------------------------------------------------------------- committing


def test_outbox_seqs_increase_and_are_never_reused(db_path: Path, store: Store) -> None:
    locker = load(store)
    first = store.commit(locker, reserve(locker, "P1", CODE_P1, at(0)))
    second = store.commit(locker, reserve(locker, "P2", CODE_P2, at(1)))
    third = store.commit(locker, locker.begin_deposit("P1", actor="c", now=at(2)))
    seqs = [e.seq for e in first + second + third]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e.seq for e in store.all_events()] == seqs
    top = seqs[-1]

    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox"))
    assert store.all_events() == []

    after = store.commit(locker, locker.door_changed("A1", DoorState.OPEN, now=at(3)))
    assert [e.seq for e in after] == [top + 1]

    # and across a restart too
    store.close()
    restarted = open_store(db_path)
    try:
        again = load(restarted)
        later = restarted.commit(again, again.door_changed("A1", DoorState.CLOSED, now=at(4)))
        assert [e.seq for e in later] == [top + 2, top + 3]
    finally:
        restarted.close()


def test_every_committed_event_is_also_in_the_audit(store: Store) -> None:
    locker = load(store)
    committed: list[StoredEvent] = []
    committed += store.commit(locker, reserve(locker, "P1", CODE_P1, at(0)))
    committed += store.commit(locker, locker.begin_deposit("P1", actor="c", now=at(1)))
    committed += store.commit(locker, locker.door_changed("A1", DoorState.OPEN, now=at(2)))
    committed += store.commit(locker, locker.door_changed("A1", DoorState.CLOSED, now=at(3)))
    columns = "event_id, type, at, compartment_id, assignment_id, payload"
    outbox = store.execute_sql(f"SELECT {columns} FROM outbox ORDER BY seq")
    audit = store.execute_sql(f"SELECT {columns} FROM audit ORDER BY id")

    assert len(committed) == 5
    assert audit == outbox
    assert [row[0] for row in audit] == [e.event_id for e in committed]

    # the audit keeps them once the outbox has been emptied
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox"))
    assert store.execute_sql(f"SELECT {columns} FROM audit ORDER BY id") == audit


def test_stored_events_round_trip(store: Store) -> None:
    locker = load(store)
    local = at(0).astimezone(CEST)
    (stored,) = store.commit(locker, reserve(locker, "P1", CODE_P1, local, size="M"))
    (pending,) = store.pending_events()

    assert pending == stored
    assert pending.type == "reserved"
    assert pending.at == at(0) and pending.at.tzinfo is not None
    assert pending.compartment_id == "A2"
    assert pending.assignment_id == "P1"
    assert pending.data == {"size": "M", "shared": False}
    message = pending.as_message(LOCKER_ID)
    assert message["locker_id"] == LOCKER_ID
    assert message["seq"] == pending.seq and message["id"] == pending.event_id
    assert datetime.fromisoformat(message["at"]) == at(0)
    assert store.execute_sql("SELECT at FROM outbox") == [("2024-05-01T12:00:00.000000+00:00",)]


def test_pending_events_mark_published_and_outbox_depth(store: Store) -> None:
    locker = load(store)
    assert store.outbox_depth() == 0
    assert store.pending_events() == []
    events = store.commit(locker, reserve(locker, "P1", CODE_P1, at(0)))
    events += store.commit(locker, reserve(locker, "P2", CODE_P2, at(1)))
    events += store.commit(locker, locker.begin_deposit("P1", actor="c", now=at(2)))
    s1, s2, s3 = (e.seq for e in events)

    assert store.outbox_depth() == 3
    assert [e.seq for e in store.pending_events()] == [s1, s2, s3]
    assert [e.seq for e in store.pending_events(limit=2)] == [s1, s2]
    assert [e.seq for e in store.pending_events(after_seq=s1)] == [s2, s3]

    store.mark_published([s1, s3], at(5))

    assert store.outbox_depth() == 1
    assert [e.seq for e in store.pending_events()] == [s2]
    assert [e.seq for e in store.all_events()] == [s1, s2, s3]
    assert store.execute_sql("SELECT seq, published_at FROM outbox ORDER BY seq") == [
        (s1, "2024-05-01T12:05:00.000000+00:00"),
        (s2, None),
        (s3, "2024-05-01T12:05:00.000000+00:00"),
    ]

    store.mark_published([], at(6))
    assert store.outbox_depth() == 1
    store.mark_published([s2], at(7))
    assert store.outbox_depth() == 0
    assert store.pending_events() == []


def test_a_commit_that_fails_midway_leaves_nothing_behind(
    db_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    locker = load(store)
    store.commit(locker, reserve(locker, "P1", CODE_P1, at(0)))
    before_state = state(reload(db_path))
    before_rows = counts(store)
    before_outbox = store.execute_sql("SELECT * FROM outbox")
    seen_inside: dict[str, Any] = {}
    real_append = Store._append_events

    def append_then_fail(
        self: Store, conn: Connection, events: Iterable[DomainEvent]
    ) -> list[StoredEvent]:
        real_append(self, conn, events)
        # inside the transaction the state change and the events are both there ...
        seen_inside["P2"] = conn.execute(
            text("SELECT status FROM assignment WHERE id = 'P2'")
        ).all()
        seen_inside["outbox"] = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
        raise RuntimeError("power cut")

    monkeypatch.setattr(Store, "_append_events", append_then_fail)
    events = reserve(locker, "P2", CODE_P2, at(1), size="M")
    events += locker.tick(50, now=at(1))
    with pytest.raises(RuntimeError, match="power cut"):
        store.commit(locker, events)
    monkeypatch.undo()

    assert seen_inside == {"P2": [("reserved",)], "outbox": before_rows["outbox"] + 1}
    # ... and after the failure neither is
    assert counts(store) == before_rows
    assert store.execute_sql("SELECT * FROM outbox") == before_outbox
    assert store.archived_status("P2") is None
    again = reload(db_path)
    assert state(again) == before_state
    assert "P2" not in again.assignments
    assert again.clock.seconds == 0


def test_a_naive_event_timestamp_rolls_back_the_state_change_too(
    db_path: Path, store: Store
) -> None:
    locker = load(store)
    before_rows = counts(store)
    events = reserve(locker, "P1", CODE_P1, at(0))
    naive = DomainEvent(type="reserved", at=datetime(2024, 5, 1, 12, 0), assignment_id="P1")

    with pytest.raises(Exception, match="timezone-aware"):
        store.commit(locker, [*events, naive])

    assert counts(store) == before_rows
    assert reload(db_path).assignments == {}


def test_a_commit_with_nothing_changed_still_saves_the_clock(store: Store) -> None:
    """The clock is written with every commit, even one with no changes and no events."""
    locker = load(store)
    locker.clock.seconds = 5.0
    assert locker.take_changes() == Changes()

    assert store.commit(locker, []) == []

    assert store.execute_sql("SELECT service_seconds FROM locker") == [(5.0,)]
    assert count(store, "outbox") == 0


# ------------------------------------------------------------------- stored codes


def test_no_code_is_stored_in_the_database_files(db_path: Path, store: Store) -> None:
    locker = load(store)
    codes = [CODE_P1, CODE_P2, "GHJ-KLM-NP", "CRR-STU-VW", "RTN-XYZ-GH"]
    store.commit(locker, reserve(locker, "P1", codes[0], at(0), size="S"))
    store.commit(locker, reserve(locker, "P2", codes[1], at(1), size="M"))
    store.commit(locker, reserve(locker, "P3", codes[2], at(2), size="L"))
    store.commit(
        locker, locker.grant_courier("courier-1", code=codes[3], expires_at=None, now=at(3))
    )
    store.commit(
        locker, locker.announce_return("R1", size="S", return_code=codes[4], now=at(4), ttl_s=60)
    )
    digest = CodeHasher(SECRET).digest(CredentialKind.PICKUP, CODE_P1)

    def files() -> bytes:
        return b"".join(
            Path(f"{db_path}{suffix}").read_bytes()
            for suffix in ("", "-wal")
            if Path(f"{db_path}{suffix}").exists()
        )

    for blob in (files(), None):
        if blob is None:  # again after the WAL has been checkpointed into the main file
            store.close()
            blob = files()
        assert digest.encode() in blob  # the credentials are on disk, as hashes
        for code in codes:
            assert code.encode() not in blob, f"code {code} is stored in the clear"
            assert code.encode("utf-16-le") not in blob
        assert SECRET not in blob


# ------------------------------------------------------- random sequences, reloaded


R_SPEC: Spec = (("c1", "S", False), ("c2", "M", True), ("c3", "L", False))
R_CODES = ["PIN-Kilo-1", "PIN-Lima-2", "RET-Papa-1", "CUR-Romeo-1"]


class ReloadMachine(RuleBasedStateMachine):
    """Random transitions, each committed; the file must always rebuild the same locker.

    After every step a brand-new Store reloads the file and must see exactly what memory
    holds; a ``restart`` rule carries on with the reloaded locker, as the daemon would.
    """

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.path = Path(self._dir.name) / "state.db"
        self.store = open_store(self.path)
        self.locker = load(self.store, spec=R_SPEC)
        self.minute = 0
        self.committed = 0
        self.serial = 0

    def teardown(self) -> None:
        self.store.close()
        self._dir.cleanup()

    def now(self) -> datetime:
        self.minute += 1
        return at(self.minute)

    def new_id(self) -> str:
        self.serial += 1
        return f"p{self.serial}"

    def known_id(self, index: int, *statuses: AssignmentStatus) -> str:
        """Mostly an assignment in one of ``statuses``; else any the locker holds, else the
        last one made (perhaps finished, perhaps never made)."""
        held = sorted(self.locker.assignments)
        wanted = [a for a in held if self.locker.assignments[a].status in statuses]
        ids = (wanted if wanted and index else held) or [f"p{self.serial}"]
        return ids[index % len(ids)]

    def apply(self, transition: Callable[[], list[DomainEvent]]) -> None:
        try:
            events = transition()
        except DomainError:
            assert not self.locker.has_changes
            return
        stored = self.store.commit(self.locker, events)
        assert [s.type for s in stored] == [e.type for e in events]
        self.committed += len(stored)

    @rule(code=st.sampled_from(R_CODES), size=st.sampled_from(["S", "M", "L"]),
          customer=st.sampled_from(["ann", "bob", None]), fresh=st.integers(0, 5).map(bool))
    def reserve(
        self, code: str, size: str, customer: str | None, fresh: bool, aid: str | None = None
    ) -> None:
        if aid is None:
            aid = self.new_id() if fresh else self.known_id(0)  # not fresh: a duplicate
        self.apply(lambda: self.locker.reserve(
            aid, pickup_code=code, now=self.now(), hold_seconds=3000, reservation_ttl_s=2000,
            size=size, customer_ref=customer,
        ))

    def open_and_close(self, cid: str | None) -> None:
        if cid is not None and cid in self.locker.intents:
            self.apply(lambda: self.locker.door_changed(cid, DoorState.OPEN, now=self.now()))
            self.apply(lambda: self.locker.door_changed(cid, DoorState.CLOSED, now=self.now()))

    @rule(code=st.sampled_from(R_CODES), size=st.sampled_from(["S", "M", "L"]),
          customer=st.sampled_from(["ann", "bob", None]))
    def deliver(self, code: str, size: str, customer: str | None) -> None:
        """The whole courier visit: reserve, open the door, put the parcel in, close."""
        aid = self.new_id()
        self.reserve(code, size, customer, fresh=False, aid=aid)
        if aid in self.locker.assignments:
            self.apply(lambda: self.locker.begin_deposit(aid, actor="courier", now=self.now()))
            self.open_and_close(self.locker.assignments[aid].compartment_id)

    @rule(code=st.sampled_from(R_CODES))
    def collect(self, code: str) -> None:
        """The whole customer visit: code, door opens, parcel out, door closes."""
        before = set(self.locker.intents)
        self.pickup(code)
        for cid in sorted(set(self.locker.intents) - before):
            self.open_and_close(cid)

    @rule(index=st.integers(0, 3))
    def begin_deposit(self, index: int) -> None:
        aid = self.known_id(index, AssignmentStatus.RESERVED)
        self.apply(lambda: self.locker.begin_deposit(aid, actor="courier", now=self.now()))

    @rule(cid=st.sampled_from([c for c, _, _ in R_SPEC]),
          door=st.sampled_from([DoorState.OPEN, DoorState.CLOSED, DoorState.CLOSED]))
    def door(self, cid: str, door: DoorState) -> None:
        self.apply(lambda: self.locker.door_changed(cid, door, now=self.now()))

    @rule(index=st.integers(0, 2), close=st.integers(0, 4).map(bool))
    def use_the_open_door(self, index: int, close: bool) -> None:
        """Open the door someone is waiting at, and (mostly) close it again."""
        if not self.locker.intents:
            return
        cid = sorted(self.locker.intents)[index % len(self.locker.intents)]
        self.apply(lambda: self.locker.door_changed(cid, DoorState.OPEN, now=self.now()))
        if close:
            self.apply(lambda: self.locker.door_changed(cid, DoorState.CLOSED, now=self.now()))

    @rule(code=st.sampled_from(R_CODES))
    def pickup(self, code: str) -> None:
        def go() -> list[DomainEvent]:
            now = self.now()
            credential = self.locker.authenticate(code, now=now, kinds=[CredentialKind.PICKUP])
            return self.locker.begin_pickup(credential, now=now)

        self.apply(go)

    @rule(code=st.sampled_from(R_CODES))
    def announce_return(self, code: str) -> None:
        aid = self.new_id()
        self.apply(lambda: self.locker.announce_return(
            aid, size="S", return_code=code, now=self.now(), ttl_s=2000
        ))

    @rule(code=st.sampled_from(R_CODES))
    def return_deposit(self, code: str) -> None:
        def go() -> list[DomainEvent]:
            now = self.now()
            credential = self.locker.authenticate(code, now=now, kinds=[CredentialKind.RETURN])
            return self.locker.begin_return_deposit(credential, now=now)

        self.apply(go)

    @rule(cid=st.sampled_from([c for c, _, _ in R_SPEC]), reclaim=st.booleans())
    def courier_removal(self, cid: str, reclaim: bool) -> None:
        begin = self.locker.begin_reclaim if reclaim else self.locker.begin_collect_return
        self.apply(lambda: begin(cid, actor="courier", now=self.now()))

    @rule(cid=st.sampled_from([c for c, _, _ in R_SPEC]))
    def abandon(self, cid: str) -> None:
        self.apply(lambda: self.locker.abandon_unlock(cid, reason="jam", now=self.now()))

    @rule(cid=st.sampled_from([c for c, _, _ in R_SPEC]), now_and_then=st.integers(0, 3))
    def operator_open(self, cid: str, now_and_then: int) -> None:
        if now_and_then:
            return
        self.apply(lambda: self.locker.begin_operator_open(
            cid, actor="op", reason="check", now=self.now()
        ))

    @rule(index=st.integers(0, 3), what=st.sampled_from(["cancel", "extend", "revoke"]))
    def manage(self, index: int, what: str) -> None:
        aid = self.known_id(index, AssignmentStatus.DEPOSITED, AssignmentStatus.RESERVED)
        if what == "cancel":
            self.apply(lambda: self.locker.cancel(aid, reason="cloud", now=self.now()))
        elif what == "extend":
            self.apply(lambda: self.locker.extend(aid, seconds=120, now=self.now()))
        else:
            self.apply(lambda: self.locker.revoke_codes(aid, now=self.now()))

    @rule(cid=st.sampled_from([c for c, _, _ in R_SPEC]), in_service=st.integers(0, 4).map(bool))
    def compartment_service(self, cid: str, in_service: bool) -> None:
        self.apply(lambda: self.locker.set_compartment_service(
            cid, in_service=in_service, reason="hinge", now=self.now()
        ))

    @rule(in_service=st.integers(0, 7).map(bool))
    def locker_service(self, in_service: bool) -> None:
        self.apply(lambda: self.locker.set_locker_service(
            in_service=in_service, reason="flood", now=self.now()
        ))

    @rule(code=st.sampled_from(R_CODES), revoke=st.booleans())
    def courier(self, code: str, revoke: bool) -> None:
        if revoke:
            self.apply(lambda: self.locker.revoke_courier("cx", now=self.now()))
        else:
            self.apply(lambda: self.locker.grant_courier(
                "cx", code=code, expires_at=None, now=self.now()
            ))

    @rule(seconds=st.sampled_from([1.0, 120.0, 1000.0, 2500.0]))
    def tick(self, seconds: float) -> None:
        self.apply(lambda: self.locker.tick(seconds, now=self.now()))

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = Store(self.path)
        self.locker = load(self.store, spec=R_SPEC)

    @invariant()
    def the_file_rebuilds_the_same_locker(self) -> None:
        assert state(reload(self.path, spec=R_SPEC)) == state(self.locker)

    @invariant()
    def every_event_is_in_outbox_and_audit_once(self) -> None:
        outbox = self.store.execute_sql("SELECT event_id FROM outbox ORDER BY seq")
        audit = self.store.execute_sql("SELECT event_id FROM audit ORDER BY id")
        assert outbox == audit
        assert len(outbox) == self.committed

    @invariant()
    def finished_assignments_are_archived_not_held(self) -> None:
        for assignment in self.store.assignments():
            assert (assignment.id in self.locker.assignments) != assignment.terminal
            if assignment.terminal:
                assert self.store.archived_status(assignment.id) is assignment.status


ReloadMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# shrinking a failure reloads the file thousands of times: give it room
TestReloadMachine = pytest.mark.slow(pytest.mark.timeout(900)(ReloadMachine.TestCase))


# -------------------------------------------------------------------- known bugs


def test_read_only_load_of_an_unmigrated_file_is_a_store_error(db_path: Path) -> None:
    unmigrated = Store(db_path)  # connecting creates the file; no migration has run
    try:
        with pytest.raises(StoreError, match="no locker"):
            load(unmigrated, read_only=True)
    finally:
        unmigrated.close()


def test_removing_a_compartment_with_an_unlock_in_progress_is_refused(
    db_path: Path, store: Store
) -> None:
    locker = load(store)
    store.commit(
        locker, locker.begin_operator_open("A3", actor="op-1", reason="cleaning", now=at(0))
    )
    store.commit(locker, locker.door_changed("A3", DoorState.OPEN, now=at(1)))

    with pytest.raises(StoreError, match="A3"):
        reload(db_path, spec=[("A1", "S", False), ("A2", "M", False)])
