"""A burst of real transitions through the agent, for the SIGKILL durability test.

Run as ``python tests/support/burst.py CONFIG``: builds the agent exactly as ``locker-agent run``
does, then cycles parcels through reserve → deposit → pickup on several compartments at once,
printing ``committed SEQ TYPE ASSIGNMENT`` once each event is committed, until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from locker_agent.app.service import LockerService
from locker_agent.config import load_config
from locker_agent.domain.model import AssignmentStatus, CredentialKind
from locker_agent.runtime.daemon import build_agent
from locker_agent.store import StoredEvent


def report(events: Sequence[StoredEvent]) -> None:
    for event in events:
        sys.stdout.write(f"committed {event.seq} {event.type} {event.assignment_id or '-'}\n")
    sys.stdout.flush()


async def wait_for(service: LockerService, assignment_id: str, status: AssignmentStatus) -> None:
    while True:
        assignment = service.locker.assignments.get(assignment_id)
        current = assignment.status if assignment else service.store.archived_status(assignment_id)
        if current is status:
            return
        await asyncio.sleep(0.005)


async def cycle(service: LockerService, worker: int) -> None:
    n = 0
    while True:
        n += 1
        assignment_id = f"burst-{worker}-{n}"
        code = f"{worker}{n:07d}"
        now = service.now()
        locker = service.locker
        service.apply(
            partial(
                locker.reserve, assignment_id, pickup_code=code, size="S", now=now,
                hold_seconds=3600, reservation_ttl_s=3600,
            )
        )
        service.apply(partial(locker.begin_deposit, assignment_id, actor="burst-courier", now=now))
        await wait_for(service, assignment_id, AssignmentStatus.DEPOSITED)
        credential = locker.authenticate(code, now=service.now(), kinds=(CredentialKind.PICKUP,))
        service.apply(partial(locker.begin_pickup, credential, now=service.now()))
        await wait_for(service, assignment_id, AssignmentStatus.PICKED_UP)


async def main(config_path: Path, workers: int) -> None:
    agent = build_agent(load_config(config_path))
    agent.service.subscribe(report)
    await agent.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(cycle(agent.service, w) for w in range(1, workers + 1)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 4))
