"""Keeping the database bounded on an SD card: forget what is old and give the space back.

``Retention(store, policy).run(now)`` deletes, each kind in short transactions of at most
``BATCH`` rows so the service is never blocked for long:

* outbox rows the cloud acknowledged (``published_at``) more than ``published_events_days``
  ago — an unpublished event is never deleted here, however old (the outbox guard alone may
  drop those, and says so with an ``outbox_overflow`` event);
* audit rows older than ``audit_days``;
* finished (terminal) assignments last changed more than ``finished_assignments_days`` ago,
  with their links and the dead credentials no other kept assignment uses. An assignment a
  live credential or a pending unlock still refers to is kept;
* dead credentials with no assignment (revoked or expired courier codes) older than that;
* inbox rows (command ids remembered for at-most-once) older than ``inbox_days``;
* used signed tokens a day after they expired (by then the verifier refuses them as expired,
  so the ledger no longer needs them).

Then it checkpoints the WAL (``TRUNCATE``) and gives free pages back to the file system:
``PRAGMA incremental_vacuum`` when the file has ``auto_vacuum = INCREMENTAL``, otherwise a full
``VACUUM`` at most once per ``vacuum_interval_h`` and only when the disk has room for it.
Without any vacuum the file still stops growing: SQLite reuses the pages deleted rows free.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, text

from locker_agent.domain.model import TERMINAL_STATUSES
from locker_agent.store.repository import Store

if TYPE_CHECKING:
    from locker_agent.config import RetentionConfig

logger = logging.getLogger(__name__)

BATCH = 2000
"""Rows deleted per transaction: short enough that a door event never waits long."""

VACUUM_ROOM_FACTOR = 2
"""Free disk a full VACUUM needs, in database sizes: a temporary copy, then every page
written again through the WAL."""

AUTO_VACUUM_INCREMENTAL = 2

_TERMINAL = tuple(sorted(s.value for s in TERMINAL_STATUSES))


class _DiskUsage(Protocol):
    @property
    def free(self) -> int: ...


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind of row is kept (and how often a full VACUUM may run)."""

    published_events_days: int = 14
    audit_days: int = 90
    finished_assignments_days: int = 90
    inbox_days: int = 8
    vacuum_interval_h: float = 168

    @classmethod
    def from_config(cls, config: RetentionConfig) -> RetentionPolicy:
        return cls(
            published_events_days=config.published_events_days,
            audit_days=config.audit_days,
            finished_assignments_days=config.finished_assignments_days,
            inbox_days=config.inbox_days,
            vacuum_interval_h=config.vacuum_interval_h,
        )


@dataclass(frozen=True)
class RetentionReport:
    """What one run deleted, how it reclaimed space and the file sizes around it (bytes)."""

    outbox: int
    audit: int
    assignments: int
    credentials: int
    links: int
    inbox: int
    used_tokens: int
    vacuum: str  # "incremental", "full", "not_due", "no_room"
    db_bytes_before: int
    wal_bytes_before: int
    db_bytes_after: int
    wal_bytes_after: int
    duration_s: float

    @property
    def deleted(self) -> int:
        return (self.outbox + self.audit + self.assignments + self.credentials + self.links
                + self.inbox + self.used_tokens)

    @property
    def bytes_before(self) -> int:
        return self.db_bytes_before + self.wal_bytes_before

    @property
    def bytes_after(self) -> int:
        return self.db_bytes_after + self.wal_bytes_after


class Retention:
    """Call ``run(now)`` now and then (hourly is plenty); each run is safe to repeat."""

    def __init__(
        self,
        store: Store,
        policy: RetentionPolicy,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        disk_usage: Callable[[str], _DiskUsage] = shutil.disk_usage,
    ) -> None:
        self._store = store
        self._policy = policy
        self._monotonic = monotonic
        self._disk_usage = disk_usage
        self._last_vacuum: float | None = None

    def run(self, now: datetime) -> RetentionReport:
        started = time.perf_counter()
        db_before, wal_before = self.file_sizes()
        policy = self._policy
        outbox = self._delete_in_batches(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
            "WHERE published_at IS NOT NULL AND published_at < :cutoff "
            "ORDER BY seq LIMIT :batch)",
            _cutoff(now, policy.published_events_days),
        )
        # audit ids grow with time: scanning in id order finds the old rows first
        audit = self._delete_in_batches(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < :cutoff "
            "ORDER BY id LIMIT :batch)",
            _cutoff(now, policy.audit_days),
        )
        assignments, credentials, links = self._delete_finished(
            _cutoff(now, policy.finished_assignments_days)
        )
        inbox = self._delete_in_batches(
            "DELETE FROM inbox WHERE command_id IN (SELECT command_id FROM inbox "
            "WHERE received_at < :cutoff LIMIT :batch)",
            _cutoff(now, policy.inbox_days),
        )
        used_tokens = self._delete_in_batches(
            "DELETE FROM used_token WHERE digest IN (SELECT digest FROM used_token "
            "WHERE expires_at < :cutoff LIMIT :batch)",
            _cutoff(now, USED_TOKEN_GRACE_DAYS),
        )
        vacuum = self._reclaim(db_before + wal_before)
        db_after, wal_after = self.file_sizes()
        report = RetentionReport(
            outbox=outbox,
            audit=audit,
            assignments=assignments,
            credentials=credentials,
            links=links,
            inbox=inbox,
            used_tokens=used_tokens,
            vacuum=vacuum,
            db_bytes_before=db_before,
            wal_bytes_before=wal_before,
            db_bytes_after=db_after,
            wal_bytes_after=wal_after,
            duration_s=round(time.perf_counter() - started, 3),
        )
        logger.info(
            "retention",
            extra={"fields": {
                "outbox": outbox,
                "audit": audit,
                "assignments": assignments,
                "credentials": credentials,
                "links": links,
                "inbox": inbox,
                "used_tokens": used_tokens,
                "vacuum": vacuum,
                "db_bytes_before": db_before,
                "wal_bytes_before": wal_before,
                "db_bytes_after": db_after,
                "wal_bytes_after": wal_after,
                "duration_s": report.duration_s,
            }},
        )
        return report

    def file_sizes(self) -> tuple[int, int]:
        """(database, WAL) sizes in bytes; 0 for a file that is not there."""
        path = self._store.path
        return _size(str(path)), _size(f"{path}-wal")

    # ---------------------------------------------------------------- deleting

    def _delete_in_batches(self, sql: str, cutoff: str) -> int:
        statement = text(sql)
        total = 0
        while True:
            with self._store.engine.begin() as conn:
                count = int(conn.execute(statement, {"cutoff": cutoff, "batch": BATCH}).rowcount)
            total += count
            if count < BATCH:
                return total

    def _delete_finished(self, cutoff: str) -> tuple[int, int, int]:
        """Old terminal assignments, their links and the dead credentials only they used."""
        assignments = credentials = links = 0
        while True:
            with self._store.engine.begin() as conn:
                ids = self._finished_batch(conn, cutoff)
                if ids:
                    a, c, n = _delete_assignments(conn, ids)
                    assignments, credentials, links = assignments + a, credentials + c, links + n
            if len(ids) < BATCH:
                break
        # dead credentials no assignment refers to (courier codes revoked or replaced)
        credentials += self._delete_in_batches(
            "DELETE FROM credential WHERE id IN (SELECT c.id FROM credential c "
            "WHERE c.live = 0 "
            "AND coalesce(c.revoked_at, c.used_at, c.expires_at, c.issued_at) < :cutoff "
            "AND NOT EXISTS (SELECT 1 FROM credential_assignment l WHERE l.credential_id = c.id) "
            "LIMIT :batch)",
            cutoff,
        )
        return assignments, credentials, links

    @staticmethod
    def _finished_batch(conn: Connection, cutoff: str) -> list[str]:
        pending: set[str] = set()
        for (raw,) in conn.exec_driver_sql("SELECT assignment_ids FROM unlock_intent"):
            pending.update(_json_list(raw))
        placeholders = ", ".join(f":s{i}" for i in range(len(_TERMINAL)))
        params: dict[str, Any] = {f"s{i}": s for i, s in enumerate(_TERMINAL)}
        rows = conn.execute(
            text(
                f"SELECT a.id FROM assignment a WHERE a.status IN ({placeholders}) "
                "AND coalesce(a.updated_at, a.created_at) < :cutoff "
                "AND NOT EXISTS (SELECT 1 FROM credential_assignment l "
                "JOIN credential c ON c.id = l.credential_id "
                "WHERE l.assignment_id = a.id AND c.live = 1) "
                "LIMIT :limit"
            ),
            {**params, "cutoff": cutoff, "limit": BATCH + len(pending)},
        )
        return [r[0] for r in rows if r[0] not in pending][:BATCH]

    # --------------------------------------------------------------- reclaiming

    def _reclaim(self, size: int) -> str:
        raw = self._store.engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            assert isinstance(dbapi, sqlite3.Connection)
            # isolation_level is None on our connections (database.py): each statement
            # below runs on its own, outside any transaction, as VACUUM requires
            _checkpoint(dbapi)
            auto_vacuum = int(dbapi.execute("PRAGMA auto_vacuum").fetchone()[0])
            if auto_vacuum == AUTO_VACUUM_INCREMENTAL:
                # execute() would step it once, freeing one page; executescript() runs it
                # to completion
                dbapi.executescript("PRAGMA incremental_vacuum;")
                outcome = "incremental"
            elif not self._vacuum_due():
                return "not_due"
            else:
                free = self._disk_usage(str(self._store.path.parent)).free
                if free < VACUUM_ROOM_FACTOR * size:
                    logger.warning(
                        "not enough free disk to VACUUM the database",
                        extra={"fields": {"free_bytes": free, "db_bytes": size,
                                          "needed_bytes": VACUUM_ROOM_FACTOR * size}},
                    )
                    return "no_room"
                dbapi.execute("VACUUM")
                self._last_vacuum = self._monotonic()
                outcome = "full"
            _checkpoint(dbapi)  # the pages VACUUM wrote went through the WAL
            return outcome
        finally:
            raw.close()

    def _vacuum_due(self) -> bool:
        if self._last_vacuum is None:
            return True
        return self._monotonic() - self._last_vacuum >= self._policy.vacuum_interval_h * 3600


USED_TOKEN_GRACE_DAYS = 1
"""Days a used token is remembered past its expiry: well beyond the verifier's clock skew."""


def _checkpoint(dbapi: sqlite3.Connection) -> None:
    busy, _, _ = dbapi.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        logger.info("WAL checkpoint incomplete: a reader was busy; the next run retries")


def _cutoff(now: datetime, days: int) -> str:
    """``now - days`` as the stored timestamps spell it (UTC ISO 8601, which sorts as text)."""
    return (now - timedelta(days=days)).astimezone(UTC).isoformat(timespec="microseconds")


def _delete_assignments(conn: Connection, ids: Sequence[str]) -> tuple[int, int, int]:
    marks = ", ".join(f":a{i}" for i in range(len(ids)))
    params = {f"a{i}": value for i, value in enumerate(ids)}
    credential_ids = [
        r[0] for r in conn.execute(
            text(f"SELECT DISTINCT credential_id FROM credential_assignment "
                 f"WHERE assignment_id IN ({marks})"),
            params,
        )
    ]
    links = int(conn.execute(
        text(f"DELETE FROM credential_assignment WHERE assignment_id IN ({marks})"), params
    ).rowcount)
    credentials = 0
    if credential_ids:
        cmarks = ", ".join(f":c{i}" for i in range(len(credential_ids)))
        cparams = {f"c{i}": value for i, value in enumerate(credential_ids)}
        # only dead ones, and only when no kept assignment still uses them
        credentials = int(conn.execute(
            text(f"DELETE FROM credential WHERE id IN ({cmarks}) AND live = 0 "
                 "AND NOT EXISTS (SELECT 1 FROM credential_assignment l "
                 "WHERE l.credential_id = credential.id)"),
            cparams,
        ).rowcount)
    assignments = int(conn.execute(
        text(f"DELETE FROM assignment WHERE id IN ({marks})"), params
    ).rowcount)
    return assignments, credentials, links


def _json_list(raw: str) -> list[str]:
    value = json.loads(raw)
    return [str(v) for v in value] if isinstance(value, list) else []


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
