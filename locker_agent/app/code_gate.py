"""The checks a code or token passes before it is matched: lockouts, signatures, replays.

One gate for the customers' codes and one for the couriers' (each namespace has its own
lockout), plus the verifier of signed QR tokens and the ledger of used pickup tokens. The
lockout counters and the ledger are written to the database as they change, so neither a
restart nor a power cut hands an attacker fresh tries or a used token back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from locker_agent.app.ports.storage import CodeGuard, StorageFull
from locker_agent.contract.tokens import (
    CourierToken,
    PickupToken,
    TokenRefused,
    TokenVerifier,
    looks_like_token,
)
from locker_agent.domain.errors import InvalidCode, LockedOut
from locker_agent.domain.lockout import (
    COURIER_LOCKOUT,
    CUSTOMER_LOCKOUT,
    CodeLockout,
    LockoutPolicy,
)

logger = logging.getLogger(__name__)




class Namespace(StrEnum):
    CUSTOMER = "customer"
    COURIER = "courier"


@dataclass(frozen=True)
class Failure:
    """What one wrong code cost: the wait it imposed and whether the whole locker is now shut."""

    wait_s: float
    locker_locked: bool
    newly_locked: bool
    refusal: LockedOut | None
    """What the next try from that input is told while the wait lasts."""


class CodeGate:
    def __init__(
        self,
        store: CodeGuard,
        *,
        customer_policy: LockoutPolicy = CUSTOMER_LOCKOUT,
        courier_policy: LockoutPolicy = COURIER_LOCKOUT,
        public_keys: Sequence[Ed25519PublicKey] = (),
        locker_id: str = "",
        max_courier_validity_s: float = 24 * 3600,
        clock_trusted: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._clock_trusted = clock_trusted
        self._lockouts = {
            Namespace.CUSTOMER: CodeLockout.restore(
                customer_policy, store.load_lockout(Namespace.CUSTOMER)
            ),
            Namespace.COURIER: CodeLockout.restore(
                courier_policy, store.load_lockout(Namespace.COURIER)
            ),
        }
        self._verifier = TokenVerifier(
            list(public_keys), locker_id,
            max_courier_validity=timedelta(seconds=max_courier_validity_s),
        )

    # ----------------------------------------------------------------- lockout

    def check(self, namespace: Namespace, source: str, now: float) -> None:
        """Raise :class:`LockedOut` if ``source`` may not try a code of ``namespace`` now.

        ``now`` is the service clock (seconds), never the wall clock: see domain/lockout.py.
        """
        lockout = self._lockouts[namespace]
        wait = lockout.wait_for(source, now)
        if wait > 0:
            raise _locked_out(wait, locker_locked=lockout.locker_locked(now))

    def failed(self, namespace: Namespace, source: str, now: float, at: datetime) -> Failure:
        lockout = self._lockouts[namespace]
        was_locked = lockout.locker_locked(now)
        wait = lockout.failed(source, now)
        self._save(namespace, at)
        locked = lockout.locker_locked(now)
        return Failure(
            wait_s=wait, locker_locked=locked, newly_locked=locked and not was_locked,
            refusal=_locked_out(wait, locker_locked=locked) if wait > 0 else None,
        )

    def succeeded(self, namespace: Namespace, source: str, at: datetime) -> None:
        if self._lockouts[namespace].succeeded(source):
            self._save(namespace, at)

    def consecutive_failures(self, namespace: Namespace, source: str) -> int:
        return self._lockouts[namespace].consecutive_failures(source)

    def _save(self, namespace: Namespace, at: datetime) -> None:
        """Write the counters; StorageFull goes up, so the caller refuses the code instead of
        counting a try the disk will not remember (a restart would hand it back)."""
        try:
            self._store.save_lockout(namespace, self._lockouts[namespace].snapshot(), at)
        except StorageFull:
            raise
        except Exception:
            # the counters still hold in memory; losing a write only matters across a restart
            logger.exception("could not save the wrong-code counters")

    # ------------------------------------------------------------------ tokens

    @staticmethod
    def is_token(text: str) -> bool:
        return looks_like_token(text)

    def clock_trusted(self) -> bool:
        """Whether the wall clock may be believed yet (``security.wall_clock``)."""
        return self._clock_trusted()

    def verify_token(self, text: str, now: datetime) -> PickupToken | CourierToken:
        """The token ``text`` stands for, or :class:`InvalidCode` with ``token_<reason>``.

        A token's validity is a span of wall-clock time: until that clock is known to be right
        (see ``security.wall_clock``) no token is honoured, so an expired one cannot come back
        on a board that booted with its clock behind. Typed codes keep working.
        """
        if not self.clock_trusted():
            raise InvalidCode(
                "This QR code cannot be checked until the locker's clock is set; "
                "please type your pickup code instead.",
                reason="token_clock_not_set",
            )
        try:
            return self._verifier.verify(text, now=now)
        except TokenRefused as exc:
            raise InvalidCode(exc.message, reason=f"token_{exc.reason}") from None

    def revoke_courier(self, courier_id: str, at: datetime) -> None:
        self._store.revoke_courier(courier_id, at)

    def courier_token_revoked(self, token: CourierToken) -> bool:
        """Was the courier revoked after this token became valid?"""
        revoked_at = self._store.courier_revoked_at(token.courier_id)
        return revoked_at is not None and revoked_at >= token.not_before

    def token_used(self, token: PickupToken) -> bool:
        return self._store.token_used(token.token_id)

    def use_token(self, token: PickupToken, now: datetime) -> bool:
        """Record a pickup token as used; False if it already was (a replay)."""
        return self._store.use_token(token.token_id, expires_at=token.expires_at, now=now)


def _locked_out(wait_s: float, *, locker_locked: bool) -> LockedOut:
    if locker_locked:
        message = (
            "Too many wrong codes have been entered at this locker. "
            f"Please try again in {_minutes(wait_s)}."
        )
    else:
        message = f"Too many wrong codes. Please try again in {_minutes(wait_s)}."
    return LockedOut(message, retry_after_s=round(wait_s, 1))


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(round(seconds), 1)} seconds"
    minutes = round(seconds / 60)
    return f"{minutes} minutes"
