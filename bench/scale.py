"""Scale: 200 compartments with 100,000 past assignments on file vs the same with none.

Past assignments are finished parcels (picked up), each with its used pickup code and the
link between them, written straight into the tables as years of service would leave them
(retention keeps 90 days by default; 100,000 is a busy locker's year). Measured in-process:
the code lookup of a live code, of a used code (that one asks the database why it is dead),
and the unlock latency of a pickup.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from bench.figures import Figure, Floor, Target
from bench.floors import Floors
from bench.lockers import write_locker_config
from bench.world import doors_for, load_parcels, pickup_latencies
from locker_agent.config import load_config
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.errors import InvalidCode
from locker_agent.domain.model import AssignmentKind, AssignmentStatus, CredentialKind
from locker_agent.runtime.daemon import Agent, build_agent, settle_heap
from locker_agent.runtime.secret import load_secret
from locker_agent.store.tables import AssignmentRow, CredentialAssignmentRow, CredentialRow

COMPARTMENTS = 200
BATCH = 10_000


def fill_history(agent: Agent, count: int, hasher: CodeHasher) -> str:
    """Write ``count`` finished parcels; returns the pickup code of the last one."""
    base = datetime.now(UTC) - timedelta(days=365)
    compartments = list(agent.service.locker.compartments)
    code = ""
    with agent.store.engine.begin() as conn:
        for start in range(0, count, BATCH):
            assignments, credentials, links = [], [], []
            for n in range(start, min(count, start + BATCH)):
                at = base + timedelta(minutes=5 * n)
                code = f"{n:08d}"
                assignments.append({
                    "id": f"past-{n}", "kind": AssignmentKind.DELIVERY.value,
                    "status": AssignmentStatus.PICKED_UP.value, "customer_ref": f"cust-{n}",
                    "size": "S", "accessible": False,
                    "compartment_id": compartments[n % len(compartments)], "barcode": None,
                    "hold_seconds": 72 * 3600.0, "hold_deadline": None,
                    "reservation_deadline": None, "paused_at": None,
                    "created_at": at, "updated_at": at + timedelta(hours=20),
                })
                credentials.append({
                    "id": f"cred-{n}", "kind": CredentialKind.PICKUP.value,
                    "digest": hasher.digest(CredentialKind.PICKUP, code), "courier_id": None,
                    "single_use": True, "live": False, "issued_at": at,
                    "expires_at": None, "used_at": at + timedelta(hours=20), "revoked_at": None,
                })
                links.append({"credential_id": f"cred-{n}", "assignment_id": f"past-{n}"})
            conn.execute(insert(AssignmentRow.__table__), assignments)  # type: ignore[attr-defined]
            conn.execute(insert(CredentialRow.__table__), credentials)  # type: ignore[attr-defined]
            conn.execute(insert(CredentialAssignmentRow.__table__), links)  # type: ignore[attr-defined]
    return code


def _lookup_ms(agent: Agent, code: str, rounds: int) -> list[float]:
    locker, now = agent.service.locker, agent.service.now()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with contextlib.suppress(InvalidCode):
            locker.authenticate(code, now=now, kinds=(CredentialKind.PICKUP,))
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _measure(
    config_path: Path, samples: int, used_code: str | None
) -> dict[str, list[float]]:
    started = time.perf_counter()
    agent = build_agent(load_config(config_path), cloud=False)
    load_s = time.perf_counter() - started
    await agent.start()
    settle_heap()  # as `locker-agent run` does once READY
    try:
        doors = doors_for(agent)
        loaded = await load_parcels(agent, doors, 1)
        live_code = loaded[0][1]
        results = {
            "load": [load_s * 1000],
            "live": _lookup_ms(agent, live_code, samples),
            "used": _lookup_ms(agent, used_code or "99999999", samples),
        }
        results["unlock"] = await pickup_latencies(agent, samples)
        return results
    finally:
        await agent.stop()


def measure(history: int, samples: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        config_path = write_locker_config(
            Path(tmp, "locker.toml"), locker_id="bench-scale", state_dir=Path(tmp, "state"),
            compartments=COMPARTMENTS,
        )
        config = load_config(config_path)
        used_code = None
        if history:
            agent = build_agent(config, cloud=False)
            try:
                hasher = CodeHasher(load_secret(config.secret_path, create=False))
                used_code = fill_history(agent, history, hasher)
            finally:
                agent.store.close()
        return asyncio.run(_measure(config_path, samples, used_code))


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    history = 5_000 if smoke else 100_000
    samples = 15 if smoke else 200
    empty = measure(0, samples)
    full = measure(history, samples)
    figures = []
    floor_of: dict[str, Floor | None] = {
        "live": None,  # in memory: a keyed hash and a dict lookup, nothing to compare with
        "used": floors.one_read(),
        "unlock": floors.one_commit(),
    }
    for key, what in (("live", "lookup of a live code"),
                      ("used", "lookup of a used code (asks the DB)"),
                      ("unlock", "unlock latency")):
        baseline = Figure("", "ms", empty[key])
        limit = max(baseline.median * 1.10, baseline.median + 0.1)
        figures.append(Figure(f"scale: {what}, empty DB", "ms", empty[key],
                              f"{len(empty[key])} runs", notes=[f"{COMPARTMENTS} compartments"],
                              floor=floor_of[key]))
        figures.append(Figure(
            f"scale: {what}, {history:,} past", "ms", full[key], f"{len(full[key])} runs",
            Target("median no slower than the empty DB's (+10 %, +0.1 ms floor)", "median",
                   limit),
            notes=[f"{COMPARTMENTS} compartments; start-up load {full['load'][0]:.0f} ms "
                   f"(empty: {empty['load'][0]:.0f} ms)"],
            floor=floor_of[key],
        ))
    return figures
