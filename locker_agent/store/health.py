"""The store's own health check: can the database be written right now?"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

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


def storage_writable(
    store: Store, *, full: Callable[[], str | None], every_s: float = 60.0,
) -> HealthCheck:
    """Fails while the disk is full (``full()`` says why), and when a real write fails.

    Reading the lock is not enough: a full disk lets every read through. So once a minute at
    most it writes one page and commits it (``synchronous=FULL``: to the card), and that
    result stands until the next try.
    """
    probe = _WriteProbe(store, every_s)

    def storage_writable() -> CheckResult:
        reason = full()
        if reason is not None:
            return False, f"the disk is full: {reason}"
        return probe.result()

    return storage_writable


class _WriteProbe:
    def __init__(self, store: Store, every_s: float) -> None:
        self._store = store
        self._every_s = every_s
        self._at = float("-inf")
        self._last: CheckResult = (True, "storage writable")

    def result(self) -> CheckResult:
        """A success stands for ``every_s``; a failure is tried again on the next call."""
        now = time.monotonic()
        if not self._last[0] or now - self._at >= self._every_s:
            self._at = now
            try:
                self._store.probe_write()
                self._last = (True, "storage writable")
            except Exception as exc:  # StorageFull, a read-only card, a wedged writer
                self._last = (False, f"a test write failed: {exc}")
        return self._last
