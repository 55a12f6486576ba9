"""Demo parcels for the simulated locker, so a newcomer can try a pickup at once.

The codes are printed once, to the terminal, and never logged or stored in clear; like every
code they exist on disk only as keyed hashes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from functools import partial

from locker_agent.app.service import LockerService
from locker_agent.config import AgentConfig
from locker_agent.domain.errors import DomainError
from locker_agent.domain.model import AssignmentStatus

DEMO_PREFIX = "demo-"
DEMO_SIZES = ("S", "M", "L")


async def seed_demo_parcels(
    service: LockerService, config: AgentConfig, *, out: Callable[[str], None]
) -> list[str]:
    """Reserve a few parcels and have a simulated courier deposit them; print their codes."""
    locker = service.locker
    waiting = [a for a in locker.assignments.values() if a.id.startswith(DEMO_PREFIX)]
    if waiting:
        out(
            f"{len(waiting)} demo parcels from an earlier run are still in the locker; their "
            "codes were printed then. Delete the state directory (make reset) for new ones."
        )
        return []
    hold_s = config.policies.hold_period_h * 3600
    ttl_s = config.policies.reservation_ttl_h * 3600
    seeded: list[tuple[str, str]] = []
    for size in DEMO_SIZES:
        if size not in locker.sizes:
            continue
        digits = max(8, locker.min_code_length)  # shorter codes are refused as weak
        code = f"{secrets.randbelow(10**digits):0{digits}d}"
        assignment_id = f"{DEMO_PREFIX}{secrets.token_hex(4)}"
        now = service.now()
        try:
            service.apply(
                partial(
                    locker.reserve, assignment_id, pickup_code=code, size=size, now=now,
                    hold_seconds=hold_s, reservation_ttl_s=ttl_s,
                    barcode=f"DEMO{assignment_id[-8:].upper()}",
                )
            )
            service.apply(
                partial(locker.begin_deposit, assignment_id, actor="demo-courier", now=now)
            )
        except DomainError as exc:
            out(f"could not seed a demo parcel of size {size}: {exc.message}")
            continue
        seeded.append((assignment_id, code))
    await _wait_deposited(service, [a for a, _ in seeded])
    out("Demo parcels (pickup codes are shown only now):")
    for assignment_id, code in seeded:
        assignment = service.locker.assignments.get(assignment_id)
        status = assignment.status.value if assignment else "gone"
        where = assignment.compartment_id if assignment else "-"
        out(f"  {assignment_id}  compartment {where}  {status:<10} pickup code {code}")
    return [a for a, _ in seeded]


async def _wait_deposited(service: LockerService, ids: list[str], timeout_s: float = 30) -> None:
    """Give the simulated courier time to open, load and close each door."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        pending = [
            a for a in ids
            if (x := service.locker.assignments.get(a)) and x.status is AssignmentStatus.RESERVED
        ]
        if not pending:
            return
        await asyncio.sleep(0.2)
