"""The demo (``make run``): parcels to try a pickup at once, and an operator key to play the cloud.

The codes are printed once, to the terminal, and never logged or stored in clear; like every
code they exist on disk only as keyed hashes. The demo operator key lives in the state
directory (``demo-operator.key``, 0600), where ``locker-ctl`` finds it to sign commands.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from locker_agent.app.service import LockerService
from locker_agent.config import AgentConfig
from locker_agent.contract.signing import load_private_key, public_key_base64
from locker_agent.domain.errors import DomainError
from locker_agent.domain.model import AssignmentStatus

DEMO_PREFIX = "demo-"
DEMO_SIZES = ("S", "M", "L")
DEMO_OPERATOR_KEY = "demo-operator.key"
DEMO_API_PORTS = 20
"""With api.port taken, the demo's kiosk takes the first free one of the next 20."""


def with_demo_operator_key(config: AgentConfig) -> AgentConfig:
    """``config`` with the demo operator's public key added (made on the first demo run)."""
    path = config.state_dir / DEMO_OPERATOR_KEY
    if not path.exists():
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
    public = public_key_base64(load_private_key(path))
    keys = [*config.security.operator_public_keys, public]
    return config.model_copy(update={
        "security": config.security.model_copy(update={"operator_public_keys": keys})
    })


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


DEMO_COURIER = "demo-courier"
DEMO_COURIER_VALID_H = 24


def grant_demo_courier(service: LockerService, *, out: Callable[[str], None]) -> str | None:
    """A courier code for this run (replacing the last run's), valid for a day; printed."""
    locker = service.locker
    digits = max(10, locker.min_code_length)
    code = f"{secrets.randbelow(10**digits):0{digits}d}"
    now = service.now()
    try:
        service.apply(partial(
            locker.grant_courier, DEMO_COURIER, code=code,
            expires_at=now + timedelta(hours=DEMO_COURIER_VALID_H), now=now,
        ))
    except DomainError as exc:
        out(f"could not grant the demo courier a code: {exc.message}")
        return None
    out(f"Courier code (choose \"I am a courier\" on the kiosk; valid "
        f"{DEMO_COURIER_VALID_H} h): {code}")
    return code


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
