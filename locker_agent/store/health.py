"""The store's own health check: can the database be written right now?"""

from __future__ import annotations

import contextlib

from locker_agent.app.health import CheckResult, HealthCheck
from locker_agent.store.repository import Store


def database_writable(store: Store, *, timeout_s: float = 0.5) -> HealthCheck:
    """Takes the database's write lock and lets it go (``BEGIN IMMEDIATE; ROLLBACK``).

    Writes nothing. Fails when another connection holds the write lock for more than
    ``timeout_s`` (a wedged writer) or the file cannot be written (read-only, gone, broken).
    """
    timeout_ms = max(1, int(timeout_s * 1000))

    def database_writable() -> CheckResult:
        raw = store.engine.raw_connection()
        try:
            connection = raw.driver_connection
            if connection is None:
                return False, "no database connection"
            cursor = connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
                cursor.execute("BEGIN IMMEDIATE")
                cursor.execute("ROLLBACK")
            except Exception as exc:
                with contextlib.suppress(Exception):
                    if connection.in_transaction:
                        cursor.execute("ROLLBACK")
                return False, f"database {store.path} is not writable: {exc}"
            finally:
                with contextlib.suppress(Exception):
                    cursor.execute("PRAGMA busy_timeout=10000")  # the engine's own setting
                cursor.close()
        finally:
            raw.close()
        return True, "database writable"

    return database_writable
