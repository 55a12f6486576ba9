"""Versioned migrations and connection settings, against real SQLite files in tmp_path."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, exc, text
from sqlmodel import SQLModel

import locker_agent.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from locker_agent.store import Store
from locker_agent.store.migrations import (
    CURRENT_VERSION,
    MIGRATIONS,
    SchemaError,
    migrate,
    schema_version,
)

EXPECTED_TABLES = {
    "locker",
    "compartment",
    "assignment",
    "credential",
    "credential_assignment",
    "unlock_intent",
    "outbox",
    "audit",
    "inbox",
    "used_token",
    "code_lockout",
    "courier_revocation",
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def _tables(store: Store) -> set[str]:
    rows = store.execute_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {r[0] for r in rows}


def _user_version(store: Store) -> int:
    with store.engine.connect() as conn:
        return schema_version(conn)


def _digest_files(db_path: Path) -> dict[str, str]:
    """Hashes of the database file and of its WAL, if there is one."""
    out = {}
    for suffix in ("", "-wal"):
        p = Path(f"{db_path}{suffix}")
        if p.exists():
            out[suffix or "db"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------- versions


def test_fresh_file_reaches_current_version_with_every_table(store: Store) -> None:
    assert _user_version(store) == 0
    assert _tables(store) == set()

    applied = store.migrate()

    assert applied == list(range(1, CURRENT_VERSION + 1))
    assert _user_version(store) == CURRENT_VERSION == len(MIGRATIONS)
    assert _tables(store) == EXPECTED_TABLES
    assert store.quick_check() == []


def test_migrating_twice_is_a_no_op(store: Store) -> None:
    store.migrate()
    schema_before = store.execute_sql("SELECT type, name, sql FROM sqlite_master ORDER BY name")

    assert store.migrate() == []

    assert _user_version(store) == CURRENT_VERSION
    assert store.execute_sql("SELECT type, name, sql FROM sqlite_master ORDER BY name") == (
        schema_before
    )


def test_migrating_again_in_a_new_store_keeps_data(db_path: Path) -> None:
    first = Store(db_path)
    first.migrate()
    with first.engine.begin() as conn:
        conn.execute(text("INSERT INTO locker (id, locker_id, service_seconds) VALUES (1, 'x', 5)"))
    first.close()

    second = Store(db_path)
    try:
        assert second.migrate() == []
        assert second.execute_sql("SELECT locker_id, service_seconds FROM locker") == [("x", 5.0)]
    finally:
        second.close()


def test_newer_database_is_refused_and_left_untouched(db_path: Path) -> None:
    newer = CURRENT_VERSION + 5
    writer = Store(db_path)
    writer.migrate()
    with writer.engine.begin() as conn:
        conn.execute(text("INSERT INTO locker (id, locker_id, service_seconds) VALUES (1, 'x', 0)"))
        conn.execute(text(f"PRAGMA user_version = {newer}"))
    writer.close()
    before = _digest_files(db_path)

    store = Store(db_path)
    try:
        with pytest.raises(SchemaError) as info:
            store.migrate()
        assert _user_version(store) == newer
    finally:
        store.close()

    message = str(info.value)
    assert str(newer) in message
    assert str(CURRENT_VERSION) in message
    assert "newer" in message
    assert "install a newer locker-agent" in message
    assert _digest_files(db_path) == before


def _create_then_fail(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE half_done (id INTEGER PRIMARY KEY)"))
    conn.execute(text("INSERT INTO half_done (id) VALUES (1)"))
    raise RuntimeError("disk said no")


def test_failing_migration_rolls_back_entirely(store: Store) -> None:
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO locker (id, locker_id, service_seconds) VALUES (1, 'x', 0)"))

    failing = (*MIGRATIONS, _create_then_fail)
    with (
        pytest.raises(
            SchemaError, match=f"schema version {CURRENT_VERSION + 1} failed: disk said no"
        ),
        store.engine.begin() as conn,
    ):
        migrate(conn, failing)

    assert _user_version(store) == CURRENT_VERSION
    assert "half_done" not in _tables(store)
    assert _tables(store) == EXPECTED_TABLES
    assert store.execute_sql("SELECT locker_id FROM locker") == [("x",)]


def test_failing_later_step_on_a_fresh_file_leaves_nothing_behind(store: Store) -> None:
    """Steps run in one transaction: step 1 succeeding does not survive step 2 failing."""
    with pytest.raises(SchemaError, match="schema version 2"), store.engine.begin() as conn:
        migrate(conn, (MIGRATIONS[0], _create_then_fail))

    assert _user_version(store) == 0
    assert _tables(store) == set()


def test_a_successful_second_migration_bumps_the_version(store: Store) -> None:
    """The control for the failure tests: the same shape of step, not failing, sticks."""
    store.migrate()

    def add_table(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE extra (id INTEGER PRIMARY KEY)"))

    with store.engine.begin() as conn:
        assert migrate(conn, (*MIGRATIONS, add_table)) == [CURRENT_VERSION + 1]

    assert _user_version(store) == CURRENT_VERSION + 1
    assert "extra" in _tables(store)


# ---------------------------------------------------------------- schema vs models


def _model_tables() -> dict[str, object]:
    return {name: t for name, t in SQLModel.metadata.tables.items() if name in EXPECTED_TABLES}


def test_models_cover_every_migrated_table(store: Store) -> None:
    store.migrate()
    assert set(_model_tables()) == EXPECTED_TABLES == _tables(store)


@pytest.mark.parametrize("table_name", sorted(EXPECTED_TABLES))
def test_migrated_schema_matches_the_models(store: Store, table_name: str) -> None:
    store.migrate()
    table = SQLModel.metadata.tables[table_name]
    info = store.execute_sql(f"PRAGMA table_info({table_name})")
    # (cid, name, type, notnull, default, pk)
    by_name = {row[1]: row for row in info}

    assert [row[1] for row in info] == [c.name for c in table.columns]

    for column in table.columns:
        _, name, sql_type, notnull, _, pk = by_name[column.name]
        rowid_alias = pk and sql_type.upper() == "INTEGER" and len(table.primary_key) == 1
        # An INTEGER PRIMARY KEY is the rowid and can never hold NULL, NOT NULL or not.
        db_not_null = bool(notnull) or bool(rowid_alias)
        assert db_not_null == (not column.nullable), (
            f"{table_name}.{name}: NOT NULL in the DB is {db_not_null}, "
            f"the model says nullable={column.nullable}"
        )
        assert bool(pk) == column.primary_key, f"{table_name}.{name}: primary key differs"


@pytest.mark.parametrize("table_name", sorted(EXPECTED_TABLES))
def test_migrated_indexes_and_foreign_keys_match_the_models(
    store: Store, table_name: str
) -> None:
    store.migrate()
    table = SQLModel.metadata.tables[table_name]

    db_indexes = {
        row[1]: bool(row[2])
        for row in store.execute_sql(f"PRAGMA index_list({table_name})")
        if row[3] == "c"  # created by CREATE INDEX, not by a constraint
    }
    model_indexes = {index.name: bool(index.unique) for index in table.indexes}
    assert db_indexes == model_indexes

    db_unique = {
        tuple(r[2] for r in store.execute_sql(f"PRAGMA index_info({row[1]})"))
        for row in store.execute_sql(f"PRAGMA index_list({table_name})")
        if row[3] == "u"
    }
    model_unique = {(c.name,) for c in table.columns if c.unique}
    assert db_unique == model_unique

    db_fks = {
        (row[3], row[2], row[4])
        for row in store.execute_sql(f"PRAGMA foreign_key_list({table_name})")
    }
    model_fks = {
        (fk.parent.name, fk.column.table.name, fk.column.name) for fk in table.foreign_keys
    }
    assert db_fks == model_fks


def test_outbox_uses_autoincrement(store: Store) -> None:
    store.migrate()
    assert store.execute_sql("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
    (sql,) = store.execute_sql("SELECT sql FROM sqlite_master WHERE name = 'outbox'")[0]
    assert "AUTOINCREMENT" in sql.upper()


# ------------------------------------------------------------------------ pragmas


def test_every_connection_runs_wal_full_sync_and_foreign_keys(store: Store) -> None:
    for _ in range(2):  # a fresh connection from the pool each time, and a reused one
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_wal_mode_is_recorded_in_the_file(store: Store, db_path: Path) -> None:
    store.migrate()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_foreign_keys_are_enforced(store: Store) -> None:
    store.migrate()
    with pytest.raises(exc.IntegrityError, match="FOREIGN KEY"), store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO assignment (id, kind, status, customer_ref, size, accessible,"
                " compartment_id, hold_seconds) VALUES"
                " ('a1', 'delivery', 'reserved', 'c', 'S', 0, 'NO-SUCH', 60)"
            )
        )
    assert store.execute_sql("SELECT count(*) FROM assignment") == [(0,)]


def test_explicit_begin_makes_dml_transactional(store: Store) -> None:
    """pysqlite's own handling is off; our BEGIN must still make a block all-or-nothing."""
    store.migrate()
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO locker (id, locker_id, service_seconds) VALUES (1, 'x', 0)")
        )
        assert conn.connection.dbapi_connection.in_transaction
        raise RuntimeError("abort")
    assert store.execute_sql("SELECT count(*) FROM locker") == [(0,)]


def test_a_version_1_locker_upgrades_to_the_cloud_link_schema_keeping_its_data(
    store: Store,
) -> None:
    """The shipped upgrade path: a database written by the first release, then migrated."""
    with store.engine.begin() as conn:
        assert migrate(conn, MIGRATIONS[:1]) == [1]
        conn.execute(text(
            "INSERT INTO locker (id, locker_id, service_seconds) VALUES (1, 'old-locker', 42.5)"
        ))
        conn.execute(text(
            "INSERT INTO compartment (id, position, size, accessible, door) "
            "VALUES ('A01', 0, 'S', 0, 'closed')"
        ))
    assert store.migrate() == list(range(2, CURRENT_VERSION + 1))
    assert store.execute_sql(
        "SELECT locker_id, service_seconds, remote_open_lockout, policy_overrides FROM locker"
    ) == [("old-locker", 42.5, None, "{}")]
    assert store.execute_sql("SELECT id, door FROM compartment") == [("A01", "closed")]
    assert "inbox" in _tables(store)
