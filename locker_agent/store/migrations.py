"""Schema versions and how to move a database from one to the next.

Why not alembic: the database is one file on a board that upgrades itself unattended at boot.
A handful of plain SQL steps, each run in one transaction together with the version bump
(SQLite's ``PRAGMA user_version``, which is transactional), is easy to audit, needs no extra
tooling on the Pi, and cannot leave a half-migrated file: a step fails, the file stays as it
was, and start-up stops with the reason.

Rule for the next engineer: never edit a migration that has shipped; append a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, text

Migration = Callable[[Connection], None]


class SchemaError(Exception):
    """The database cannot be brought to the schema this code needs."""


def _v1_initial(conn: Connection) -> None:
    for statement in V1_DDL.split(";"):
        if statement.strip():
            conn.execute(text(statement))


V1_DDL = """
CREATE TABLE locker (
    id INTEGER NOT NULL PRIMARY KEY,
    locker_id VARCHAR NOT NULL,
    service_seconds FLOAT NOT NULL,
    out_of_service_reason VARCHAR
);
CREATE TABLE compartment (
    id VARCHAR NOT NULL PRIMARY KEY,
    position INTEGER NOT NULL,
    size VARCHAR NOT NULL,
    accessible BOOLEAN NOT NULL,
    out_of_service_reason VARCHAR,
    door VARCHAR NOT NULL
);
CREATE TABLE assignment (
    id VARCHAR NOT NULL PRIMARY KEY,
    kind VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    customer_ref VARCHAR NOT NULL,
    size VARCHAR NOT NULL,
    accessible BOOLEAN NOT NULL,
    compartment_id VARCHAR REFERENCES compartment (id),
    barcode VARCHAR,
    hold_seconds FLOAT NOT NULL,
    hold_deadline FLOAT,
    reservation_deadline FLOAT,
    paused_at FLOAT,
    created_at TEXT,
    updated_at TEXT
);
CREATE INDEX ix_assignment_status ON assignment (status);
CREATE TABLE credential (
    id VARCHAR NOT NULL PRIMARY KEY,
    kind VARCHAR NOT NULL,
    digest VARCHAR NOT NULL,
    courier_id VARCHAR,
    single_use BOOLEAN NOT NULL,
    live BOOLEAN NOT NULL,
    issued_at TEXT,
    expires_at TEXT,
    used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX ix_credential_live ON credential (live);
CREATE INDEX ix_credential_digest ON credential (digest);
CREATE TABLE credential_assignment (
    credential_id VARCHAR NOT NULL REFERENCES credential (id),
    assignment_id VARCHAR NOT NULL REFERENCES assignment (id),
    PRIMARY KEY (credential_id, assignment_id)
);
CREATE TABLE unlock_intent (
    compartment_id VARCHAR NOT NULL PRIMARY KEY REFERENCES compartment (id),
    purpose VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    assignment_ids VARCHAR NOT NULL,
    requested_at TEXT NOT NULL,
    door_opened BOOLEAN NOT NULL,
    reason VARCHAR
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id VARCHAR NOT NULL UNIQUE,
    type VARCHAR NOT NULL,
    at TEXT NOT NULL,
    compartment_id VARCHAR,
    assignment_id VARCHAR,
    payload VARCHAR NOT NULL,
    published_at TEXT
);
CREATE INDEX ix_outbox_published_at ON outbox (published_at);
CREATE TABLE audit (
    id INTEGER NOT NULL PRIMARY KEY,
    event_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    at TEXT NOT NULL,
    compartment_id VARCHAR,
    assignment_id VARCHAR,
    payload VARCHAR NOT NULL
);
CREATE INDEX ix_audit_type ON audit (type);
"""

def _v2_cloud_link(conn: Connection) -> None:
    """The cloud link: an inbox of command ids (at-most-once), the remote-open alarm latch
    and runtime policy overrides set by the cloud."""
    for statement in V2_DDL.split(";"):
        if statement.strip():
            conn.execute(text(statement))


V2_DDL = """
ALTER TABLE locker ADD COLUMN remote_open_lockout VARCHAR;
ALTER TABLE locker ADD COLUMN policy_overrides VARCHAR NOT NULL DEFAULT '{}';
CREATE TABLE inbox (
    command_id VARCHAR NOT NULL PRIMARY KEY,
    name VARCHAR NOT NULL,
    received_at TEXT NOT NULL,
    reply VARCHAR NOT NULL
);
CREATE INDEX ix_inbox_received_at ON inbox (received_at);
"""

def _v3_code_guard(conn: Connection) -> None:
    """Brute-force and replay protection: used signed tokens, wrong-code counters, and
    couriers revoked (so their signed tokens stop too)."""
    for statement in V3_DDL.split(";"):
        if statement.strip():
            conn.execute(text(statement))


V3_DDL = """
CREATE TABLE used_token (
    digest VARCHAR NOT NULL PRIMARY KEY,
    expires_at TEXT NOT NULL,
    used_at TEXT NOT NULL
);
CREATE INDEX ix_used_token_expires_at ON used_token (expires_at);
CREATE TABLE code_lockout (
    namespace VARCHAR NOT NULL PRIMARY KEY,
    state VARCHAR NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE courier_revocation (
    courier_id VARCHAR NOT NULL PRIMARY KEY,
    revoked_at TEXT NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_cloud_link, _v3_code_guard)
"""Migration ``i`` takes a database from version ``i`` to ``i + 1``."""

CURRENT_VERSION = len(MIGRATIONS)


def schema_version(conn: Connection) -> int:
    return int(conn.execute(text("PRAGMA user_version")).scalar_one())


def migrate(conn: Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the database up to ``len(migrations)``; return the versions it passed through.

    ``conn`` must be inside a transaction that the caller commits: every step and its version
    bump land together or not at all.
    """
    target = len(migrations)
    version = schema_version(conn)
    if version > target:
        raise SchemaError(
            f"the database is at schema version {version}, newer than this locker-agent "
            f"understands ({target}); install a newer locker-agent or restore a backup"
        )
    applied = []
    for number in range(version, target):
        try:
            migrations[number](conn)
        except Exception as exc:
            raise SchemaError(
                f"migration to schema version {number + 1} failed: {exc}"
            ) from exc
        conn.execute(text(f"PRAGMA user_version = {number + 1}"))
        applied.append(number + 1)
    return applied
