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

from bench.figures import Figure, Target
from bench.floors import Floors
from bench.lockers import write_locker_config
from locker_agent.config import load_config
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.locker import Locker
from locker_agent.domain.model import DomainEvent
from locker_agent.runtime.state import compartments_from
from locker_agent.store import Store

HOUR = 3600.0


def commit_times(rounds: int) -> tuple[list[float], list[float]]:
    """Per commit of a reserve or a cancel: (wall-clock ms, CPU ms of this thread).

    CPU time is what the code costs, whatever else runs on the machine; wall-clock time adds
    the fsync and any wait for a core.
    """
    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        config = load_config(write_locker_config(
            Path(tmp, "locker.toml"), locker_id="bench-commit", state_dir=Path(tmp, "state")))
        config.state_dir.mkdir(parents=True)
        store = Store(config.database_path, exclusive=True)
        try:
            store.migrate()
            locker = store.load(config.locker_id, compartments_from(config),
                                CodeHasher(b"k" * 32), sizes=config.sizes)
            wall: list[float] = []
            cpu: list[float] = []
            for index in range(rounds):
                now = datetime.now(UTC)
                assignment_id = f"p-{index}"
                events = locker.reserve(assignment_id, pickup_code=f"{index:08d}", size="S",
                                        now=now, hold_seconds=72 * HOUR,
                                        reservation_ttl_s=24 * HOUR)
                _timed(store, locker, events, wall, cpu)
                events = locker.cancel(assignment_id, reason="bench", now=now)
                _timed(store, locker, events, wall, cpu)
            return wall, cpu
        finally:
            store.close()


def _timed(
    store: Store, locker: Locker, events: list[DomainEvent], wall: list[float], cpu: list[float]
) -> None:
    started, started_cpu = time.perf_counter(), time.thread_time()
    store.commit(locker, events)
    cpu.append((time.thread_time() - started_cpu) * 1000)
    wall.append((time.perf_counter() - started) * 1000)


CPU_TARGET = Target("median ≤ 0.3 ms", "median", 0.3)
"""Issue 19: the code's own cost per commit, whatever the machine's load."""


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    wall, cpu = commit_times(100 if smoke else 1000)
    note = "reserve and cancel alternately; one transaction each, synchronous=FULL (fsync)"
    return [
        Figure("Store.commit per transition, wall clock", "ms", wall,
               f"{len(wall)} commits", notes=[note], floor=floors.one_commit()),
        Figure("Store.commit per transition, CPU", "ms", cpu, f"{len(cpu)} commits", CPU_TARGET,
               notes=["CPU time of the committing thread: the code's own cost"],
               floor=floors.commit_cpu_floor()),
    ]
