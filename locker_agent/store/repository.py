"""The locker's state on disk: load it at start, commit each transition with its events.

Every transition's changes and the events it produced are written in one SQLite transaction
(the transactional outbox): after a power cut either both are there or neither is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.sqlite import insert

from locker_agent.app.ports.storage import AuditRecord, InboxRecord, StoredEvent, StoreError
from locker_agent.domain.clock import ServiceClock
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.locker import Changes, Locker
from locker_agent.domain.model import (
    TERMINAL_STATUSES,
    Assignment,
    AssignmentKind,
    AssignmentStatus,
    Compartment,
    Credential,
    CredentialKind,
    DomainEvent,
    DoorState,
    UnlockIntent,
    UnlockPurpose,
)
from locker_agent.store.code_guard import CodeGuardStore
from locker_agent.store.database import open_engine
from locker_agent.store.migrations import CURRENT_VERSION, migrate, schema_version
from locker_agent.store.prepared import Prepared
from locker_agent.store.tables import (
    AssignmentRow,
    AuditRow,
    CompartmentRow,
    CredentialAssignmentRow,
    CredentialRow,
    InboxRow,
    LockerRow,
    OutboxRow,
    UnlockIntentRow,
)

_LOCKER = LockerRow.__table__  # type: ignore[attr-defined]
_COMPARTMENT = CompartmentRow.__table__  # type: ignore[attr-defined]
_ASSIGNMENT = AssignmentRow.__table__  # type: ignore[attr-defined]
_CREDENTIAL = CredentialRow.__table__  # type: ignore[attr-defined]
_LINK = CredentialAssignmentRow.__table__  # type: ignore[attr-defined]
_INTENT = UnlockIntentRow.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
_AUDIT = AuditRow.__table__  # type: ignore[attr-defined]
_INBOX = InboxRow.__table__  # type: ignore[attr-defined]

_TERMINAL = [s.value for s in TERMINAL_STATUSES]


def _upsert(table: Any, key: str) -> Any:
    """INSERT, or on a clash of ``key`` UPDATE every other column to the new row's values."""
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[key],
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name != key},
    )


# The commit path's statements, compiled once and run on the SQLite cursor (store/prepared.py):
# building a statement per row, then running even a cached one through SQLAlchemy's execution
# machinery, cost more CPU than SQLite's own work (measured with bench/store_commit.py; see
# docs/benchmarks.md, issues 8 and 19).
_EVENT_COLUMNS = ("event_id", "type", "at", "compartment_id", "assignment_id", "payload")
_UPDATE_LOCKER = Prepared(update(_LOCKER).where(_LOCKER.c.id == 1).values(
    service_seconds=bindparam("b_seconds"),
    out_of_service_reason=bindparam("b_out_of_service_reason"),
    remote_open_lockout=bindparam("b_remote_open_lockout"),
))
_UPDATE_COMPARTMENT = Prepared(
    update(_COMPARTMENT).where(_COMPARTMENT.c.id == bindparam("b_id")).values(
        out_of_service_reason=bindparam("b_out_of_service_reason"), door=bindparam("b_door"))
)
_UPSERT_ASSIGNMENT = Prepared(_upsert(_ASSIGNMENT, "id"), [c.name for c in _ASSIGNMENT.columns])
_UPSERT_CREDENTIAL = Prepared(_upsert(_CREDENTIAL, "id"), [c.name for c in _CREDENTIAL.columns])
_UPSERT_INTENT = Prepared(_upsert(_INTENT, "compartment_id"), [c.name for c in _INTENT.columns])
_DELETE_INTENT = Prepared(delete(_INTENT).where(_INTENT.c.compartment_id == bindparam("b_id")))
_LINK_CREDENTIAL = Prepared(insert(_LINK).on_conflict_do_nothing(),
                            ["credential_id", "assignment_id"])
_INSERT_OUTBOX = Prepared(insert(_OUTBOX), _EVENT_COLUMNS)
_INSERT_AUDIT = Prepared(insert(_AUDIT), _EVENT_COLUMNS)
_INSERT_INBOX = Prepared(insert(_INBOX).on_conflict_do_nothing(),
                         ["command_id", "name", "received_at", "reply"])
_INBOX_REPLY = Prepared(select(_INBOX.c.reply).where(_INBOX.c.command_id == bindparam("b_id")))
_ARCHIVED_STATUS = Prepared(
    select(_ASSIGNMENT.c.status).where(_ASSIGNMENT.c.id == bindparam("b_id")))
_PENDING_EVENTS = Prepared(
    select(_OUTBOX.c.seq, *[_OUTBOX.c[name] for name in _EVENT_COLUMNS])
    .where(_OUTBOX.c.published_at.is_(None), _OUTBOX.c.seq > bindparam("b_after"))
    .order_by(_OUTBOX.c.seq)
    .limit(bindparam("b_limit"))
)
_DEAD_CODE = Prepared(
    select(_CREDENTIAL.c.revoked_at, _ASSIGNMENT.c.status)
    .select_from(_CREDENTIAL)
    .outerjoin(_LINK, _LINK.c.credential_id == _CREDENTIAL.c.id)
    .outerjoin(_ASSIGNMENT, _ASSIGNMENT.c.id == _LINK.c.assignment_id)
    .where(_CREDENTIAL.c.digest == bindparam("b_digest"), _CREDENTIAL.c.live.is_(False))
)
_MARK_PUBLISHED = Prepared(update(_OUTBOX).where(_OUTBOX.c.seq == bindparam("b_seq")).values(
    published_at=bindparam("b_at")))


RESERVE_FILE = "reserve.space"
RESERVE_BYTES = 4 * 1024 * 1024
"""Kept free in a file beside the database and given back when a write fails for want of
space, so the locker can still record that its disk is full (a few events need a few KB)."""


class Store:
    def __init__(self, path: Path, *, exclusive: bool = False) -> None:
        """Open the database; ``exclusive`` also claims it for this process alone.

        Two agents on one state directory would both drive the doors and interleave their
        state, so the agent takes an exclusive lock (released by the kernel even on SIGKILL);
        read-only tools (status, doctor) do not.
        """
        self.path = path
        self._lock_fd: int | None = None
        if exclusive:
            self._lock_fd = _claim(path.with_name(path.name + ".lock"))
        self.engine = open_engine(path)
        self._writer: Connection | None = None
        self._writer_thread: int | None = None
        self._acknowledged: dict[int, datetime] = {}
        """Events the broker acknowledged whose published_at is not written yet (seq: when):
        see mark_published_soon."""
        self._acknowledged_lock = threading.Lock()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # at worst those events are sent once more
            self.flush_published()
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # from another thread: the pool's to close
                writer.close()
        self.engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def migrate(self) -> list[int]:
        with self.engine.begin() as conn:
            return migrate(conn)

    def quick_check(self) -> list[str]:
        """Problems SQLite finds in the file; empty when it is sound."""
        with self.engine.connect() as conn:
            rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

    # ------------------------------------------------------------------ loading

    def load(
        self,
        locker_id: str,
        compartments: Sequence[Compartment],
        hasher: CodeHasher,
        *,
        sizes: Sequence[str],
        read_only: bool = False,
    ) -> Locker:
        """Rebuild the locker from the file, adding compartments the config has and the DB lacks.

        ``read_only`` loads without writing anything (for reports while the daemon runs).
        """
        with self.engine.begin() as conn:
            version = schema_version(conn)
            if version == 0:
                raise StoreError(f"{self.path} holds no locker yet; has the agent run?")
            if version != CURRENT_VERSION:
                raise StoreError(
                    f"{self.path} is at schema version {version}; this locker-agent needs "
                    f"{CURRENT_VERSION} (start the agent to migrate it)"
                )
            locker_row = conn.execute(select(_LOCKER)).mappings().first()
            if locker_row is None and read_only:
                raise StoreError(f"{self.path} holds no locker yet; has the agent run?")
            if locker_row is None:
                conn.execute(insert(_LOCKER).values(id=1, locker_id=locker_id, service_seconds=0))
                locker_row = conn.execute(select(_LOCKER)).mappings().one()
            elif locker_row["locker_id"] != locker_id:
                raise StoreError(
                    f"{self.path} belongs to locker {locker_row['locker_id']!r}, "
                    f"but the config says {locker_id!r}; point state_dir elsewhere or fix locker_id"
                )
            stored = {r["id"]: r for r in conn.execute(select(_COMPARTMENT)).mappings()}
            for position, compartment in enumerate(compartments):
                row = stored.get(compartment.id)
                if row is not None:
                    compartment.out_of_service_reason = row["out_of_service_reason"]
                    compartment.door = DoorState(row["door"])
                if read_only:
                    continue
                conn.execute(
                    insert(_COMPARTMENT)
                    .values(
                        id=compartment.id,
                        position=position,
                        size=compartment.size,
                        accessible=compartment.accessible,
                        out_of_service_reason=compartment.out_of_service_reason,
                        door=compartment.door.value,
                    )
                    .on_conflict_do_update(
                        index_elements=["id"],
                        set_={"position": position, "size": compartment.size,
                              "accessible": compartment.accessible},
                    )
                )
            assignments = [
                _assignment(r)
                for r in conn.execute(
                    select(_ASSIGNMENT).where(_ASSIGNMENT.c.status.not_in(_TERMINAL))
                ).mappings()
            ]
            intents = [_intent(r) for r in conn.execute(select(_INTENT)).mappings()]
            known = {c.id for c in compartments}
            orphans = sorted(
                ({a.compartment_id for a in assignments if a.compartment_id}
                 | {i.compartment_id for i in intents})
                - known
            )
            if orphans:
                raise StoreError(
                    f"compartments {', '.join(orphans)} hold parcels or have a door being opened "
                    "but are no longer in the config; put them back (out of service if need "
                    "be) until they are emptied"
                )
            by_id = {c.id: c for c in compartments}
            for assignment in assignments:
                if assignment.compartment_id:
                    by_id[assignment.compartment_id].assignment_ids.add(assignment.id)
            links: dict[str, set[str]] = {}
            for link in conn.execute(select(_LINK)).mappings():
                links.setdefault(link["credential_id"], set()).add(link["assignment_id"])
            credentials = [
                _credential(r, links.get(r["id"], set()))
                for r in conn.execute(
                    select(_CREDENTIAL).where(_CREDENTIAL.c.live.is_(True))
                ).mappings()
            ]
        return Locker(
            locker_id,
            compartments,
            hasher,
            sizes=sizes,
            clock=ServiceClock(float(locker_row["service_seconds"])),
            out_of_service_reason=locker_row["out_of_service_reason"],
            remote_open_lockout=locker_row["remote_open_lockout"],
            assignments=assignments,
            credentials=credentials,
            intents=intents,
            archive=self.archived_status,
            code_archive=self.dead_code_reason,
        )

    def archived_status(self, assignment_id: str) -> AssignmentStatus | None:
        with self._reading() as conn:
            row = _ARCHIVED_STATUS.run(conn, {"b_id": assignment_id}).fetchone()
        return None if row is None else AssignmentStatus(row[0])

    def dead_code_reason(self, digest: str) -> str | None:
        """Why a code no longer in memory stopped working, if this locker ever had it."""
        with self._reading() as conn:
            rows = _DEAD_CODE.rows(conn, {"b_digest": digest})
        if not rows:
            return None
        if any(revoked_at is not None for revoked_at, _ in rows):
            return "revoked"
        statuses = {status for _, status in rows if status is not None}
        if AssignmentStatus.RECLAIMED.value in statuses:
            return "expired"
        if statuses == {AssignmentStatus.CANCELLED.value}:
            return "revoked"
        return "used"

    # ---------------------------------------------------------------- committing

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for a read on the hot path: the writer's, in its own thread."""
        if threading.get_ident() == self._writer_thread and self._writer is not None \
                and not self._writer.closed and not self._writer.in_transaction():
            yield self._writer
            return
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction for the locker's own writes, on a connection kept open for them.

        Checking a connection out of the pool and back in for every commit cost more CPU than
        the commit's statements (docs/benchmarks.md, issue 19). The connection belongs to the
        thread that first wrote (the event loop's: SQLite connections stay in their thread);
        any other thread gets one from the pool as before.
        """
        thread = threading.get_ident()
        if self._writer_thread is None:
            self._writer_thread = thread
        if thread != self._writer_thread:
            with self.engine.begin() as conn:
                yield conn
            return
        if self._writer is None or self._writer.closed:
            self._writer = self.engine.connect()
        with self._writer.begin():
            yield self._writer

    def commit(
        self,
        locker: Locker,
        events: Sequence[DomainEvent],
        *,
        inbox: InboxRecord | None = None,
        policy_overrides: Mapping[str, Any] | None = None,
    ) -> list[StoredEvent]:
        """Write everything ``locker`` changed and ``events``, in one transaction.

        ``inbox`` records the command that caused it (with its reply) in the same transaction,
        so a command is applied at most once even across a power cut.
        """
        changes = locker.take_changes()
        acknowledged = self._acknowledged_now()
        with self._transaction() as conn:
            self._write_published(conn, acknowledged)
            self._write_changes(conn, locker, changes)
            if inbox is not None:
                self._write_inbox(conn, inbox)
            if policy_overrides is not None:
                conn.execute(
                    update(_LOCKER).where(_LOCKER.c.id == 1).values(
                        policy_overrides=json.dumps(dict(policy_overrides), sort_keys=True)
                    )
                )
            stored = self._append_events(conn, events)
        self._forget_acknowledged(acknowledged)
        return stored

    # --------------------------------------------------------------------- inbox

    def inbox_reply(self, command_id: str) -> dict[str, Any] | None:
        """The reply already given to ``command_id``, if it was seen before."""
        with self._reading() as conn:
            row = _INBOX_REPLY.run(conn, {"b_id": command_id}).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def record_command(self, record: InboxRecord) -> None:
        """Remember a command that changed nothing (refused, or a query) with its reply."""
        with self._transaction() as conn:
            self._write_inbox(conn, record)

    def policy_overrides(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            raw = conn.execute(select(_LOCKER.c.policy_overrides)).scalar_one_or_none()
        return dict(json.loads(raw)) if raw else {}

    @staticmethod
    def _write_inbox(conn: Connection, record: InboxRecord) -> None:
        _INSERT_INBOX.run(conn, {
            "command_id": record.command_id,
            "name": record.name,
            "received_at": record.received_at,
            "reply": json.dumps(record.reply, sort_keys=True, default=str),
        })

    def code_guard(self) -> CodeGuardStore:
        """Lockout counters, the used-token ledger and courier revocations, in this file."""
        return CodeGuardStore(self.engine)

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(RESERVE_FILE)

    def restore_reserve(self) -> bool:
        """Keep RESERVE_BYTES of the disk in reserve (a file of zeros), if there is room."""
        target = self.reserve_path
        if target.exists() and target.stat().st_size >= RESERVE_BYTES:
            return True
        try:
            if shutil.disk_usage(target.parent).free < 2 * RESERVE_BYTES:
                return False
            with target.open("wb") as reserve:
                reserve.write(b"\0" * RESERVE_BYTES)
                reserve.flush()
                os.fsync(reserve.fileno())
        except OSError:
            target.unlink(missing_ok=True)
            return False
        return True

    def release_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        except OSError:
            return False
        return True

    def save_clock(self, locker: Locker) -> None:
        with self._transaction() as conn:
            self._write_locker(conn, locker)

    def _write_changes(self, conn: Connection, locker: Locker, changes: Changes) -> None:
        self._write_locker(conn, locker)
        if changes.compartments:
            _UPDATE_COMPARTMENT.run_many(conn, [
                {"b_id": c.id, "b_out_of_service_reason": c.out_of_service_reason,
                 "b_door": c.door.value}
                for c in changes.compartments.values()
            ])
        if changes.assignments:
            _UPSERT_ASSIGNMENT.run_many(
                conn, [_assignment_values(a) for a in changes.assignments.values()]
            )
        if changes.credentials:
            _UPSERT_CREDENTIAL.run_many(conn, [
                _credential_values(cred, live=cred.id in locker.credentials)
                for cred in changes.credentials.values()
            ])
            links = [
                {"credential_id": cred.id, "assignment_id": assignment_id}
                for cred in changes.credentials.values()
                for assignment_id in cred.assignment_ids
            ]
            if links:
                _LINK_CREDENTIAL.run_many(conn, links)
        gone = [{"b_id": cid} for cid, intent in changes.intents.items() if intent is None]
        if gone:
            _DELETE_INTENT.run_many(conn, gone)
        kept = [_intent_values(i) for i in changes.intents.values() if i is not None]
        if kept:
            _UPSERT_INTENT.run_many(conn, kept)

    def _write_locker(self, conn: Connection, locker: Locker) -> None:
        _UPDATE_LOCKER.run(conn, {
            "b_seconds": locker.clock.seconds,
            "b_out_of_service_reason": locker.out_of_service_reason,
            "b_remote_open_lockout": locker.remote_open_lockout,
        })

    def _append_events(
        self, conn: Connection, events: Iterable[DomainEvent]
    ) -> list[StoredEvent]:
        stored = []
        rows = []
        for event in events:
            event_id = str(uuid.uuid4())
            payload = json.dumps(event.data, sort_keys=True, default=str)
            row = {
                "event_id": event_id,
                "type": event.type,
                "at": event.at,
                "compartment_id": event.compartment_id,
                "assignment_id": event.assignment_id,
                "payload": payload,
            }
            seq = _INSERT_OUTBOX.run(conn, row).lastrowid
            assert seq is not None
            rows.append(row)
            stored.append(
                StoredEvent(
                    seq=int(seq),
                    event_id=event_id,
                    type=event.type,
                    at=event.at,
                    compartment_id=event.compartment_id,
                    assignment_id=event.assignment_id,
                    data=json.loads(payload),
                )
            )
        if rows:
            _INSERT_AUDIT.run_many(conn, rows)
        return stored

    # -------------------------------------------------------------------- outbox

    def pending_events(self, limit: int = 100, after_seq: int = 0) -> list[StoredEvent]:
        """Unpublished events in ``seq`` order (acknowledged ones not yet written are not)."""
        acknowledged = self._acknowledged_now()
        with self._reading() as conn:
            rows = _PENDING_EVENTS.rows(
                conn, {"b_after": after_seq, "b_limit": limit + len(acknowledged)})
        return [
            StoredEvent(seq=seq, event_id=event_id, type=type_, at=at,
                        compartment_id=compartment_id, assignment_id=assignment_id,
                        data=json.loads(payload))
            for seq, event_id, type_, at, compartment_id, assignment_id, payload in rows
            if seq not in acknowledged
        ][:limit]

    def mark_published(self, seqs: Iterable[int], at: datetime) -> None:
        with self._transaction() as conn:
            _MARK_PUBLISHED.run_many(conn, [{"b_seq": seq, "b_at": at} for seq in seqs])

    def mark_published_soon(self, seqs: Iterable[int], at: datetime) -> int:
        """Remember acknowledgements to write with the next commit (or flush_published).

        An acknowledgement needs no fsync of its own: lost in a power cut, its event is sent
        once more, which at-least-once delivery with stable event ids allows. Writing each
        one at once cost a command a second fsync (docs/benchmarks.md, issue 19).
        """
        with self._acknowledged_lock:
            for seq in seqs:
                self._acknowledged.setdefault(seq, at)
            return len(self._acknowledged)

    def flush_published(self) -> None:
        acknowledged = self._acknowledged_now()
        if not acknowledged:
            return
        with self._transaction() as conn:
            self._write_published(conn, acknowledged)
        self._forget_acknowledged(acknowledged)

    def _acknowledged_now(self) -> dict[int, datetime]:
        with self._acknowledged_lock:
            return dict(self._acknowledged)

    def _forget_acknowledged(self, written: Mapping[int, datetime]) -> None:
        with self._acknowledged_lock:
            for seq in written:
                self._acknowledged.pop(seq, None)

    @staticmethod
    def _write_published(conn: Connection, acknowledged: Mapping[int, datetime]) -> None:
        if acknowledged:
            _MARK_PUBLISHED.run_many(
                conn, [{"b_seq": seq, "b_at": at} for seq, at in acknowledged.items()])

    def unpublish(self, from_seq: int, to_seq: int) -> tuple[int, int | None]:
        """Queue events ``from_seq..to_seq`` to be sent again; returns (count, oldest kept seq)."""
        with self._acknowledged_lock:
            for seq in [s for s in self._acknowledged if from_seq <= s <= to_seq]:
                del self._acknowledged[seq]
        with self.engine.begin() as conn:
            oldest = conn.execute(select(func.min(_OUTBOX.c.seq))).scalar_one_or_none()
            result = conn.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.seq >= from_seq, _OUTBOX.c.seq <= to_seq)
                .values(published_at=None)
            )
            return int(result.rowcount or 0), oldest

    def drop_oldest_unpublished(self, count: int) -> tuple[int, int, int] | None:
        """Delete the ``count`` oldest unpublished events; (first seq, last seq, number)."""
        self.flush_published()  # acknowledged ones are not among them
        with self.engine.begin() as conn:
            seqs = list(
                conn.execute(
                    select(_OUTBOX.c.seq)
                    .where(_OUTBOX.c.published_at.is_(None))
                    .order_by(_OUTBOX.c.seq)
                    .limit(count)
                ).scalars()
            )
            if not seqs:
                return None
            conn.execute(delete(_OUTBOX).where(_OUTBOX.c.seq.in_(seqs)))
            return seqs[0], seqs[-1], len(seqs)

    def outbox_depth(self) -> int:
        """Events not yet acknowledged by the broker."""
        acknowledged = self._acknowledged_now()
        with self.engine.connect() as conn:
            unpublished = int(
                conn.execute(
                    select(func.count()).select_from(_OUTBOX).where(
                        _OUTBOX.c.published_at.is_(None)
                    )
                ).scalar_one()
            )
        return max(0, unpublished - len(acknowledged))

    def last_seq(self) -> int:
        """The highest seq ever given to an event (0 if none)."""
        with self.engine.connect() as conn:
            seq = conn.execute(
                text("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            ).scalar_one_or_none()
        return int(seq or 0)

    def latest_time(self) -> datetime | None:
        """The latest event time committed (the audit log outlives the outbox), if any."""
        with self.engine.connect() as conn:
            latest = conn.execute(select(func.max(_AUDIT.c.at))).scalar_one_or_none()
        return latest if isinstance(latest, datetime) else None

    def audit_page(
        self, *, limit: int, before_id: int | None = None, type: str | None = None
    ) -> list[AuditRecord]:
        """Up to ``limit`` audit entries, newest first, older than ``before_id``."""
        query = select(_AUDIT).order_by(_AUDIT.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(_AUDIT.c.id < before_id)
        if type is not None:
            query = query.where(_AUDIT.c.type == type)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        return [
            AuditRecord(
                id=r["id"], event_id=r["event_id"], type=r["type"], at=r["at"],
                compartment_id=r["compartment_id"], assignment_id=r["assignment_id"],
                payload=r["payload"],
            )
            for r in rows
        ]

    def all_events(self) -> list[StoredEvent]:
        """Every event still in the outbox, published or not, in ``seq`` order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_OUTBOX).order_by(_OUTBOX.c.seq)).mappings()
            return [_stored_event(r) for r in rows]

    def assignments(self) -> list[Assignment]:
        """Every assignment on file, finished or not (for reports and the status command)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_ASSIGNMENT).order_by(_ASSIGNMENT.c.created_at)
            ).mappings()
            return [_assignment(r) for r in rows]

    def probe_write(self) -> None:
        """Write one page and commit it, for the health check; StorageFull if there is no room."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=500")  # a wedged writer: say so, soon
            try:
                conn.execute(update(_LOCKER).where(_LOCKER.c.id == 1).values(
                    service_seconds=_LOCKER.c.service_seconds))
            finally:
                conn.exec_driver_sql("PRAGMA busy_timeout=10000")  # the engine's own

    def execute_sql(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a read-only query (diagnostics and tests)."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]


def _claim(lock_path: Path) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"another locker-agent is using {lock_path.parent} (stop it first: "
            "systemctl stop locker-agent)"
        ) from None
    return fd


# ------------------------------------------------------------------- row mapping


def _assignment(r: Any) -> Assignment:
    return Assignment(
        id=r["id"],
        kind=AssignmentKind(r["kind"]),
        status=AssignmentStatus(r["status"]),
        customer_ref=r["customer_ref"],
        size=r["size"],
        accessible=bool(r["accessible"]),
        compartment_id=r["compartment_id"],
        barcode=r["barcode"],
        hold_seconds=r["hold_seconds"],
        hold_deadline=r["hold_deadline"],
        reservation_deadline=r["reservation_deadline"],
        paused_at=r["paused_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _assignment_values(a: Assignment) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind.value,
        "status": a.status.value,
        "customer_ref": a.customer_ref,
        "size": a.size,
        "accessible": a.accessible,
        "compartment_id": a.compartment_id,
        "barcode": a.barcode,
        "hold_seconds": a.hold_seconds,
        "hold_deadline": a.hold_deadline,
        "reservation_deadline": a.reservation_deadline,
        "paused_at": a.paused_at,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
    }


def _credential(r: Any, assignment_ids: set[str]) -> Credential:
    return Credential(
        id=r["id"],
        kind=CredentialKind(r["kind"]),
        digest=r["digest"],
        assignment_ids=frozenset(assignment_ids),
        courier_id=r["courier_id"],
        expires_at=r["expires_at"],
        single_use=bool(r["single_use"]),
        issued_at=r["issued_at"],
        used_at=r["used_at"],
        revoked_at=r["revoked_at"],
    )


def _credential_values(c: Credential, *, live: bool) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind.value,
        "digest": c.digest,
        "courier_id": c.courier_id,
        "single_use": c.single_use,
        "live": live,
        "issued_at": c.issued_at,
        "expires_at": c.expires_at,
        "used_at": c.used_at,
        "revoked_at": c.revoked_at,
    }


def _intent(r: Any) -> UnlockIntent:
    return UnlockIntent(
        compartment_id=r["compartment_id"],
        purpose=UnlockPurpose(r["purpose"]),
        actor=r["actor"],
        assignment_ids=frozenset(json.loads(r["assignment_ids"])),
        requested_at=r["requested_at"],
        door_opened=bool(r["door_opened"]),
        reason=r["reason"],
    )


def _intent_values(i: UnlockIntent) -> dict[str, Any]:
    return {
        "compartment_id": i.compartment_id,
        "purpose": i.purpose.value,
        "actor": i.actor,
        "assignment_ids": json.dumps(sorted(i.assignment_ids)),
        "requested_at": i.requested_at,
        "door_opened": i.door_opened,
        "reason": i.reason,
    }


def _stored_event(r: Any) -> StoredEvent:
    return StoredEvent(
        seq=r["seq"],
        event_id=r["event_id"],
        type=r["type"],
        at=r["at"],
        compartment_id=r["compartment_id"],
        assignment_id=r["assignment_id"],
        data=json.loads(r["payload"]),
    )
