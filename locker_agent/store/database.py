"""Opening the SQLite file the way an SD card that may lose power at any moment needs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from locker_agent.app.ports.storage import StorageFull

_NO_ROOM = frozenset({"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC",
                      "SQLITE_IOERR_TRUNCATE", "SQLITE_IOERR_SHMSIZE"})
"""SQLite's ways of saying a write did not reach the disk: out of space, a file too big for
the process (RLIMIT_FSIZE), a card that refuses writes."""


def no_room(error: BaseException, path: Path | None = None) -> StorageFull | None:
    """The StorageFull that ``error`` stands for, if it is SQLite saying the disk is full."""
    if getattr(error, "sqlite_errorname", None) not in _NO_ROOM:
        return None
    return StorageFull(f"{path or 'the database'}: cannot write: {error}")


def open_engine(path: Path) -> Engine:
    """An engine whose every connection runs WAL, synchronous=FULL, with foreign keys on.

    pysqlite's own transaction handling does not wrap DDL and opens transactions lazily; we
    switch it off and emit BEGIN ourselves (the recipe SQLAlchemy documents for SQLite) so a
    migration or a state change with its events is truly one transaction.
    """
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": 10.0},
        pool_pre_ping=False,
    )

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        original = context.original_exception
        full = no_room(original, path)
        if full is not None:
            raise full from original

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # on the SQLite connection itself: through exec_driver_sql this one word cost more
        # CPU than some of the statements that follow it (docs/benchmarks.md, issue 19)
        conn.connection.driver_connection.execute("BEGIN")

    return engine
