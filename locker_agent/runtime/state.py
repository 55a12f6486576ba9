"""Opening the locker's state at start: the state directory, the database and the secret.

A damaged or vanished database fails closed (:func:`fail_closed`): every compartment out of
service until the cloud has synced the locker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from locker_agent.app.service import LockerService
from locker_agent.config import AgentConfig
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.model import Compartment, DomainEvent
from locker_agent.runtime.errors import StartupError
from locker_agent.runtime.secret import SecretError, load_secret
from locker_agent.store import Store, StoreError
from locker_agent.store.migrations import SchemaError

logger = logging.getLogger(__name__)


def compartments_from(config: AgentConfig) -> list[Compartment]:
    return [
        Compartment(id=c.id, size=c.size, accessible=c.accessible) for c in config.compartments
    ]


@dataclass(frozen=True)
class StateLoss:
    """The database was damaged or missing at start: what was kept aside, and why."""

    reason: str
    kept_aside: Path | None


def _damage(store: Store) -> list[str]:
    try:
        return store.quick_check()
    except Exception as exc:  # not even a database: "file is not a database", I/O errors
        return [str(exc).splitlines()[0]]


def _keep_aside(database: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = database.with_name(f"{database.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = database.with_name(database.name + suffix)
        if part.exists():
            part.rename(target.with_name(target.name + suffix))
    return target


def open_store(config: AgentConfig) -> tuple[Store, CodeHasher, StateLoss | None]:
    """Open (creating if need be) the state directory, the database and the secret.

    Fails closed: a damaged database is kept aside and a new one started, and a database
    that vanished while the locker's secret remained is treated the same way; the caller
    then takes every compartment out of service until the cloud has synced the locker.
    """
    state_dir = config.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise StartupError(
            f"cannot create the state directory {state_dir}: {exc.strerror}; "
            "set state_dir in the config or LOCKER_AGENT_STATE_DIR"
        ) from exc
    database = config.database_path
    is_new = not database.exists()
    loss: StateLoss | None = None
    if is_new and config.secret_path.exists():
        loss = StateLoss("the database is missing but this locker has run before", None)
        logger.error("state lost: database missing", extra={"fields": {"path": str(database)}})
    try:
        store = Store(database, exclusive=True)
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
    problems = [] if is_new else _damage(store)
    if problems:
        store.close()
        kept = _keep_aside(database)
        loss = StateLoss(f"the database was damaged: {'; '.join(problems[:3])}", kept)
        logger.error(
            "state lost: damaged database kept aside",
            extra={"fields": {"path": str(database), "kept_aside": str(kept),
                              "problems": "; ".join(problems[:3])}},
        )
        store = Store(database, exclusive=True)
        is_new = True
    try:
        store.migrate()
        has_codes = bool(store.execute_sql("SELECT 1 FROM credential LIMIT 1"))
        secret = load_secret(config.secret_path, create=is_new or not has_codes)
    except (SchemaError, SecretError) as exc:
        store.close()
        raise StartupError(str(exc)) from exc
    except Exception:
        store.close()
        raise
    return store, CodeHasher(secret), loss


def fail_closed(service: LockerService, loss: StateLoss) -> None:
    """Every compartment locked and out of service, and the cloud told to sync this locker."""
    now = service.now()
    reason = "state lost: awaiting sync from the cloud"
    for compartment_id in list(service.locker.compartments):
        service.apply(
            partial(service.locker.set_compartment_service, compartment_id,
                    in_service=False, reason=reason, now=now)
        )
    kept = str(loss.kept_aside) if loss.kept_aside else None
    event = DomainEvent(
        "state_lost", now,
        data={"reason": loss.reason, "kept_aside": kept,
              "action": "sync this locker, re-send its assignments, then set_service back in"},
    )
    service.apply(lambda: [event])
