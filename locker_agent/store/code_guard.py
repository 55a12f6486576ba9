"""What stops guessing and replay at the locker, kept on disk so a restart forgets none of it.

Two small tables beside the locker's state: the wrong-code counters of each namespace of
codes (customers', couriers') and the signed pickup tokens already used. Neither holds a code
or a token: counters are counts and times, tokens are kept as a SHA-256 of their id.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.sqlite import insert

from locker_agent.store.tables import CodeLockoutRow, CourierRevocationRow, UsedTokenRow

_LOCKOUT = CodeLockoutRow.__table__  # type: ignore[attr-defined]
_USED_TOKEN = UsedTokenRow.__table__  # type: ignore[attr-defined]
_REVOCATION = CourierRevocationRow.__table__  # type: ignore[attr-defined]


class CodeGuardStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ----------------------------------------------------------------- lockout

    def load_lockout(self, namespace: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            raw = conn.execute(
                select(_LOCKOUT.c.state).where(_LOCKOUT.c.namespace == namespace)
            ).scalar_one_or_none()
        if raw is None:
            return None
        try:
            state = json.loads(raw)
        except ValueError:
            return {"damaged": True}  # CodeLockout.restore starts a damaged state empty
        return state if isinstance(state, dict) else {"damaged": True}

    def save_lockout(self, namespace: str, state: dict[str, Any], at: datetime) -> None:
        statement = insert(_LOCKOUT).values(
            namespace=namespace, state=json.dumps(state, sort_keys=True), updated_at=at
        )
        with self._engine.begin() as conn:
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["namespace"],
                    set_={"state": statement.excluded.state,
                          "updated_at": statement.excluded.updated_at},
                )
            )

    # ------------------------------------------------------------------ tokens

    def use_token(self, token_id: str, *, expires_at: datetime, now: datetime) -> bool:
        """Record a token as used; False if it had been used before (a replay)."""
        digest = token_digest(token_id)
        with self._engine.begin() as conn:
            result = conn.execute(
                insert(_USED_TOKEN)
                .values(digest=digest, expires_at=expires_at, used_at=now)
                .on_conflict_do_nothing()
            )
            return bool(result.rowcount)

    def token_used(self, token_id: str) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(
                select(_USED_TOKEN.c.digest).where(_USED_TOKEN.c.digest == token_digest(token_id))
            ).first() is not None

    # ------------------------------------------------------- courier revocations

    def revoke_courier(self, courier_id: str, at: datetime) -> None:
        statement = insert(_REVOCATION).values(courier_id=courier_id, revoked_at=at)
        with self._engine.begin() as conn:
            conn.execute(statement.on_conflict_do_update(
                index_elements=["courier_id"], set_={"revoked_at": statement.excluded.revoked_at}
            ))

    def courier_revoked_at(self, courier_id: str) -> datetime | None:
        with self._engine.connect() as conn:
            value: datetime | None = conn.execute(
                select(_REVOCATION.c.revoked_at).where(_REVOCATION.c.courier_id == courier_id)
            ).scalar_one_or_none()
        return value



def token_digest(token_id: str) -> str:
    return hashlib.sha256(token_id.encode()).hexdigest()
