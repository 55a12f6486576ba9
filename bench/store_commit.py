"""Store.commit: the cost of committing one transition with its events (the hot path).

A parcel is reserved for a compartment and cancelled again, round after round, straight on
the domain and the store (no event loop, no hardware): what is left is building the SQL,
SQLite's work and the fsync that synchronous=FULL makes every commit wait for.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import Figure
from bench.lockers import write_locker_config
from locker_agent.config import load_config
from locker_agent.daemon import compartments_from
from locker_agent.domain.credentials import CodeHasher
from locker_agent.store import Store

HOUR = 3600.0


def commit_times(rounds: int) -> tuple[list[float], list[float]]:
    """Milliseconds per commit: (reserve transitions, cancel transitions)."""
    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        config = load_config(write_locker_config(
            Path(tmp, "locker.toml"), locker_id="bench-commit", state_dir=Path(tmp, "state")))
        config.state_dir.mkdir(parents=True)
        store = Store(config.database_path, exclusive=True)
        try:
            store.migrate()
            locker = store.load(config.locker_id, compartments_from(config),
                                CodeHasher(b"k" * 32), sizes=config.sizes)
            reserve, cancel = [], []
            for index in range(rounds):
                now = datetime.now(UTC)
                assignment_id = f"p-{index}"
                events = locker.reserve(assignment_id, pickup_code=f"{index:08d}", size="S",
                                        now=now, hold_seconds=72 * HOUR,
                                        reservation_ttl_s=24 * HOUR)
                started = time.perf_counter()
                store.commit(locker, events)
                reserve.append((time.perf_counter() - started) * 1000)
                events = locker.cancel(assignment_id, reason="bench", now=now)
                started = time.perf_counter()
                store.commit(locker, events)
                cancel.append((time.perf_counter() - started) * 1000)
            return reserve, cancel
        finally:
            store.close()


def run(*, smoke: bool) -> list[Figure]:
    reserve, cancel = commit_times(100 if smoke else 1000)
    note = "one transaction, synchronous=FULL (an fsync per commit)"
    return [
        Figure("Store.commit, reserve (context)", "ms", reserve,
               f"{len(reserve)} commits", notes=[note]),
        Figure("Store.commit, cancel (context)", "ms", cancel, f"{len(cancel)} commits",
               notes=[note]),
    ]
