"""Where a typed or scanned code becomes an opening, or a refusal that says what to do.

Signed tokens are checked by signature (they cannot be guessed, so no lockout applies to
them); every other code first passes the lockout, and a wrong one counts toward it. Refusals
are recorded as events, never with the code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from locker_agent.app.code_gate import Namespace
from locker_agent.app.outcomes import (
    COMPARTMENT_UNAVAILABLE,
    NOT_READY,
    STORAGE_FULL,
    CodeOutcome,
)
from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.app.ports.storage import StorageFull, StoredEvent
from locker_agent.app.state import LockerState
from locker_agent.contract.tokens import CourierToken
from locker_agent.domain.errors import (
    CompartmentUnavailable,
    DomainError,
    InvalidCode,
    LockedOut,
)
from locker_agent.domain.model import CredentialKind, DomainEvent

logger = logging.getLogger(__name__)

TOKEN_REFUSAL_EVENT_GAP_S = 1.0


class CodeDesk:
    """Customers' codes and tokens: pickups and return deposits; refusals for every namespace."""

    def __init__(self, state: LockerState) -> None:
        self._state = state
        self._token_refusals: dict[str, float] = {}

    async def submit(self, entry: CodeEntry) -> CodeOutcome:
        """A customer typed or scanned a code: open what it opens, or say why not.

        Never while the disk is full: a wrong code's lockout could not be kept, so a restart
        would hand the tries back.
        """
        if self._state.storage_full is not None:
            return STORAGE_FULL
        try:
            return self._submit(entry)
        except StorageFull as exc:
            self._state.storage_failed(exc)
            return STORAGE_FULL

    def _submit(self, entry: CodeEntry) -> CodeOutcome:
        state = self._state
        if not state.accepting:
            return NOT_READY
        now = state.now()
        gate = state.gate
        if gate.is_token(entry.text):
            return self._submit_token(entry, now)
        try:
            gate.check(Namespace.CUSTOMER, entry.source, state.code_clock())
        except LockedOut as exc:
            return CodeOutcome(False, exc.message, reason="locked_out",
                               retry_after_s=exc.retry_after_s)
        try:
            credential = state.locker.authenticate(
                entry.text, now=now, kinds=(CredentialKind.PICKUP, CredentialKind.RETURN)
            )
            if credential.kind is CredentialKind.PICKUP:
                stored = state.apply(lambda: state.locker.begin_pickup(
                    credential, now=now, source=entry.source))
            else:
                stored = state.apply(lambda: state.locker.begin_return_deposit(
                    credential, now=now, source=entry.source))
        except InvalidCode as exc:
            return self.refuse(Namespace.CUSTOMER, entry.source, exc, now)
        except CompartmentUnavailable:
            # a right code whose door cannot open now (its lock board is silent, say): not a
            # wrong try, but on record, and the customer is told the code still works
            self._record_refusal(Namespace.CUSTOMER, entry.source, CompartmentUnavailable.code)
            return COMPARTMENT_UNAVAILABLE
        except DomainError as exc:
            return CodeOutcome(False, exc.message, reason=exc.code)
        try:
            gate.succeeded(Namespace.CUSTOMER, entry.source, now)
        except StorageFull as exc:  # the door is opening all the same
            state.storage_failed(exc)
        return self.opened(stored, "please close the door when you are done.")

    def _submit_token(self, entry: CodeEntry, now: datetime) -> CodeOutcome:
        """A signed pickup token: one use that opened the door, then refused as a replay.

        A token whose earlier use never got the door open (a jam, a restart before the door
        moved) works again while its parcel is still inside: the ledger stops a second
        opening, not a customer whose first one failed.
        """
        state = self._state
        try:
            token = state.gate.verify_token(entry.text, now)
            if isinstance(token, CourierToken):
                return CodeOutcome(
                    False, "This is a courier pass: choose Courier on the screen first.",
                    reason="courier_token",
                )
            if state.gate.token_used(token) and not state.locker.collectable(token.assignment_id):
                raise InvalidCode("This code has already been used.", reason="token_replayed")
            stored = state.apply(lambda: state.locker.begin_token_pickup(
                token.assignment_id, now=now, source=entry.source))
        except InvalidCode as exc:
            self.record_token_refusal(Namespace.CUSTOMER, entry.source, exc.reason)
            return CodeOutcome(False, exc.message, reason=exc.reason)
        except DomainError as exc:
            return CodeOutcome(False, exc.message, reason=exc.code)
        try:
            state.gate.use_token(token, now)
        except Exception:
            logger.exception("could not record a used token; the door opens regardless")
        return self.opened(stored, "please close the door when you are done.")

    def refuse(
        self, namespace: Namespace, source: str, error: InvalidCode, now: datetime
    ) -> CodeOutcome:
        """Count a wrong code toward the lockout, record it (never the code), say what to do.

        The count is written first: if the disk cannot keep it, StorageFull goes up and the
        code is refused as such, not counted in memory only.
        """
        state = self._state
        failure = None
        if error.reason != "in_use":
            failure = state.gate.failed(namespace, source, state.code_clock(), now)
        self._record_refusal(namespace, source, error.reason)
        if failure is None:
            return CodeOutcome(False, error.message, reason=error.reason)
        if failure.refusal is None:
            return CodeOutcome(False, error.message, reason=error.reason)
        scope = "locker" if failure.locker_locked else "input"
        if scope == "input" or failure.newly_locked:
            event = DomainEvent(
                "code_lockout", now,
                data={"namespace": namespace.value, "scope": scope, "source": source,
                      "retry_after_s": failure.refusal.retry_after_s},
            )
            state.apply(lambda: [event])
        return CodeOutcome(False, f"{error.message} {failure.refusal.message}",
                           reason=error.reason, retry_after_s=failure.refusal.retry_after_s)

    def record_token_refusal(self, namespace: Namespace, source: str, reason: str) -> None:
        """A refused signed token: recorded, but at most one event a second per input.

        Tokens skip the lockout (they cannot be guessed), so nothing else bounds how fast
        someone can scan junk; the events, not the refusals, are what is thinned out.
        """
        last = self._token_refusals.get(source)
        current = self._state.monotonic()
        if last is not None and current - last < TOKEN_REFUSAL_EVENT_GAP_S:
            logger.info("token refused", extra={"fields": {
                "namespace": namespace.value, "source": source, "reason": reason}})
            return
        self._token_refusals[source] = current
        self._record_refusal(namespace, source, reason)

    def _record_refusal(self, namespace: Namespace, source: str, reason: str) -> None:
        logger.warning("code refused", extra={"fields": {
            "namespace": namespace.value, "source": source, "reason": reason}})
        event = DomainEvent(
            "code_refused", self._state.now(),
            data={"namespace": namespace.value, "source": source, "reason": reason},
        )
        try:
            self._state.apply(lambda: [event])
        except Exception:
            logger.exception("could not record a refused code")

    def opened(self, stored: Sequence[StoredEvent], then: str) -> CodeOutcome:
        """The outcome of a step that opened doors: which, where, and what to do next."""
        opened = tuple(e.compartment_id for e in stored if e.type == "unlock_requested"
                       and e.compartment_id)
        if not opened:
            return CodeOutcome(False, "No compartment could be opened.", reason="nothing_opened")
        labels = ", ".join(self._state.label(c) for c in opened)
        noun = "Compartment" if len(opened) == 1 else "Compartments"
        verb = "is" if len(opened) == 1 else "are"
        return CodeOutcome(True, f"{noun} {labels} {verb} opening — {then}", compartments=opened)
