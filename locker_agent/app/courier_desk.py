"""A courier's session at the locker: sign in, then deposit, collect returns, reclaim.

A courier signs in with a courier code (its own lockout namespace) or a signed courier token,
and gets a session that lists what is waiting for them. Each step opens doors through the
same domain transitions and the same :class:`~locker_agent.app.service.LockerService` as every
other input, with the courier named as the actor of every opening. Sessions live in memory
only: a restart signs couriers out, which is the safe direction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from locker_agent.app.code_gate import Namespace
from locker_agent.app.outcomes import (
    NOT_READY,
    STORAGE_FULL,
    CodeOutcome,
    CourierView,
    WaitingParcel,
)
from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.app.ports.storage import StorageFull, StoredEvent
from locker_agent.app.service import LockerService
from locker_agent.contract.tokens import PickupToken
from locker_agent.domain.errors import DomainError, InvalidCode, LockedOut, SessionExpired
from locker_agent.domain.locker import Locker
from locker_agent.domain.model import Assignment, CredentialKind, DomainEvent

logger = logging.getLogger(__name__)

Problem = Literal["doesnt_fit", "door_broken"]
_Waiting = Callable[[Locker], list[Assignment]]
_BeginRemoval = Callable[..., list[DomainEvent]]
"""``Locker.begin_collect_return`` or ``Locker.begin_reclaim``, called on the live locker."""
_Transition = Callable[[], list[DomainEvent]]


SESSION_MAX_AGE_S = 3600.0
"""However busy, a session ends after an hour: the courier signs in again."""


@dataclass
class _Session:
    id: str
    courier_id: str
    source: str
    started: float
    last_step: float
    credential_id: str | None = None
    """The courier code it was opened with: revoking or expiring it ends the session."""
    expires_at: datetime | None = None
    """The signed token's expiry, for a session opened with one."""
    opened: set[str] = field(default_factory=set)

    @property
    def actor(self) -> str:
        return f"courier:{self.courier_id}"


class CourierDesk:
    def __init__(self, service: LockerService, *, idle_timeout_s: float = 300.0) -> None:
        self._service = service
        self._idle_timeout_s = idle_timeout_s
        self._sessions: dict[str, _Session] = {}
        service.subscribe(self._watch_revocations)

    def _watch_revocations(self, events: Sequence[StoredEvent]) -> None:
        """A revoked courier's signed tokens stop too, and their sessions end at once."""
        for event in events:
            if event.type != "courier_revoked":
                continue
            courier_id = str(event.data.get("courier_id", ""))
            self._service.gate.revoke_courier(courier_id, event.at)
            for session_id in [s.id for s in self._sessions.values()
                               if s.courier_id == courier_id]:
                del self._sessions[session_id]

    # ------------------------------------------------------------------ session

    async def sign_in(self, entry: CodeEntry) -> CodeOutcome:
        """Check a courier code or courier token; on success the outcome carries the session."""
        if self._service.storage_full is not None:
            return STORAGE_FULL
        try:
            return self._sign_in(entry)
        except StorageFull as exc:
            self._service.storage_failed(exc)
            return STORAGE_FULL

    def _sign_in(self, entry: CodeEntry) -> CodeOutcome:
        service = self._service
        if not service.accepting:
            return NOT_READY
        now = service.now()
        if service.gate.is_token(entry.text):
            try:
                token = service.gate.verify_token(entry.text, now)
            except InvalidCode as exc:
                # a token cannot be guessed: refusing it costs no courier any tries
                service.record_token_refusal(Namespace.COURIER, entry.source, exc.reason)
                return CodeOutcome(False, exc.message, reason=exc.reason)
            if isinstance(token, PickupToken):
                return CodeOutcome(False, "This is a customer's code: use the start screen.",
                                   reason="customer_token")
            if service.gate.courier_token_revoked(token):
                service.record_token_refusal(Namespace.COURIER, entry.source, "revoked")
                return CodeOutcome(False, "This courier pass is no longer valid.",
                                   reason="revoked")
            return self._open_session(token.courier_id, entry.source, "token", now,
                                      expires_at=token.expires_at)
        try:
            service.gate.check(Namespace.COURIER, entry.source, service.code_clock())
        except LockedOut as exc:
            return CodeOutcome(False, exc.message, reason="locked_out",
                               retry_after_s=exc.retry_after_s)
        try:
            credential = service.locker.authenticate(
                entry.text, now=now, kinds=(CredentialKind.COURIER,)
            )
        except InvalidCode as exc:
            return service.refuse_code(Namespace.COURIER, entry.source, exc, now)
        if credential.expires_at is not None and not service.gate.clock_trusted():
            # its expiry is a wall-clock time, and that clock may be days behind: a code
            # that expired while the locker was off must not open doors again
            return CodeOutcome(
                False, "Courier codes with an end date work once the locker's clock is set; "
                "please try again in a few minutes.", reason="token_clock_not_set",
            )
        service.gate.succeeded(Namespace.COURIER, entry.source, now)
        assert credential.courier_id is not None
        return self._open_session(credential.courier_id, entry.source, "code", now,
                                  credential_id=credential.id)

    def view(self, session_id: str) -> CourierView:
        """The session's current lists; raises :class:`SessionExpired` once it has ended."""
        return self._view(self._session(session_id, touch=False))

    def sign_out(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    # -------------------------------------------------------------------- steps

    async def deposit(self, session_id: str, parcel: str) -> CodeOutcome:
        """Open the compartment for the parcel scanned (its barcode or assignment id)."""
        session = self._session(session_id)
        service = self._service
        return self._step(session, lambda: service.locker.begin_deposit(
            service.locker.find_parcel(parcel.strip()).id, actor=session.actor,
            now=service.now(), source=session.source,
        ), "put the parcel in and close the door.")

    async def report_problem(
        self, session_id: str, compartment_id: str, problem: Problem
    ) -> CodeOutcome:
        """The parcel does not fit the open compartment, or its door is broken.

        Only for a door this courier is depositing into right now.
        """
        session = self._session(session_id)
        service = self._service
        intent = service.locker.intents.get(compartment_id)
        if intent is None or intent.actor != session.actor:
            return CodeOutcome(
                False, "That compartment is not open for one of your parcels.",
                reason="not_your_door", courier=self._view(session),
            )
        outcome = self._step(session, lambda: service.locker.redirect_deposit(
            compartment_id, problem=problem, actor=session.actor, now=service.now(),
            source=session.source,
        ), "put the parcel in and close the door.")
        if outcome.reason == "nothing_opened":
            what = "larger " if problem == "doesnt_fit" else ""
            return CodeOutcome(
                False,
                f"No {what}compartment is free for this parcel. Please take it with you; "
                "it can be brought again later.",
                reason="no_compartment", courier=outcome.courier,
            )
        return outcome

    async def collect_returns(self, session_id: str) -> CodeOutcome:
        """Open every compartment holding a customer's return."""
        return self._open_each(
            session_id, Locker.returns_to_collect, Locker.begin_collect_return,
            "take the returns out and close the doors.", "There are no returns to collect.",
        )

    async def reclaim_expired(self, session_id: str) -> CodeOutcome:
        """Open every compartment holding a parcel whose hold period ran out."""
        return self._open_each(
            session_id, Locker.expired_to_reclaim, Locker.begin_reclaim,
            "take the expired parcels out and close the doors.",
            "There are no expired parcels to take back.",
        )

    # ---------------------------------------------------------------- internals

    def _open_each(
        self,
        session_id: str,
        waiting: _Waiting,
        begin_one: _BeginRemoval,
        then: str,
        nothing: str,
    ) -> CodeOutcome:
        session = self._session(session_id)
        service = self._service
        locker = service.locker
        compartments = sorted({a.compartment_id for a in waiting(locker) if a.compartment_id})
        compartments = [c for c in compartments if c not in locker.intents]
        if not compartments:
            return CodeOutcome(False, nothing, reason="nothing_waiting",
                               courier=self._view(session))

        def begin() -> list[DomainEvent]:
            now = service.now()
            events: list[DomainEvent] = []
            for compartment_id in compartments:
                events += begin_one(service.locker, compartment_id, actor=session.actor,
                                    now=now, source=session.source)
            return events

        return self._step(session, begin, then)

    def _step(self, session: _Session, transition: _Transition, then: str) -> CodeOutcome:
        try:
            stored = self._service.apply(transition)
        except DomainError as exc:
            return CodeOutcome(False, exc.message, reason=exc.code, courier=self._view(session))
        except StorageFull:
            return STORAGE_FULL
        outcome = self._service.opened(stored, then)
        session.opened.update(outcome.compartments)
        return replace(outcome, courier=self._view(session))

    def _open_session(
        self, courier_id: str, source: str, via: str, now: datetime, *,
        credential_id: str | None = None, expires_at: datetime | None = None,
    ) -> CodeOutcome:
        self._forget_idle()
        for other in [s for s in self._sessions.values() if s.courier_id == courier_id]:
            del self._sessions[other.id]  # one session per courier: the newest
        started = self._service.monotonic()
        session = _Session(
            id=secrets.token_urlsafe(16), courier_id=courier_id, source=source,
            started=started, last_step=started, credential_id=credential_id,
            expires_at=expires_at,
        )
        self._sessions[session.id] = session
        event = DomainEvent("courier_signed_in", now,
                            data={"courier_id": courier_id, "source": source, "via": via})
        self._service.apply(lambda: [event])
        view = self._view(session)
        waiting = len(view.to_deposit) + len(view.returns_to_collect) + len(view.expired_to_reclaim)
        return CodeOutcome(True, f"Welcome. {waiting} item(s) are waiting for you here.",
                           courier=view)

    def _session(self, session_id: str, *, touch: bool = True) -> _Session:
        self._forget_idle()
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionExpired(
                "Your courier session has ended. Please sign in again.", field="session_id"
            )
        if touch:
            session.last_step = self._service.monotonic()
        return session

    def _forget_idle(self) -> None:
        """End sessions gone idle, too old, or whose code or token no longer holds."""
        service = self._service
        now, wall = service.monotonic(), service.now()
        for session_id, session in list(self._sessions.items()):
            credential = (
                service.locker.credentials.get(session.credential_id)
                if session.credential_id else None
            )
            if (
                now - session.last_step >= self._idle_timeout_s
                or now - session.started >= SESSION_MAX_AGE_S
                or (session.expires_at is not None and wall >= session.expires_at)
                or (session.credential_id is not None and (
                    credential is None or credential.revoked_at is not None
                    or (credential.expires_at is not None and wall >= credential.expires_at)
                ))
            ):
                del self._sessions[session_id]

    def _view(self, session: _Session) -> CourierView:
        service = self._service
        locker = service.locker
        session.opened &= set(locker.intents)  # a door that closed is no longer open
        return CourierView(
            session_id=session.id,
            courier_id=session.courier_id,
            to_deposit=self._listed(locker.awaiting_deposit()),
            returns_to_collect=self._listed(locker.returns_to_collect()),
            expired_to_reclaim=self._listed(locker.expired_to_reclaim()),
            open_compartments=tuple(sorted(session.opened)),
            idle_expires_in_s=max(
                self._idle_timeout_s - (service.monotonic() - session.last_step), 0.0
            ),
        )

    def _listed(self, assignments: list[Assignment]) -> tuple[WaitingParcel, ...]:
        return tuple(
            WaitingParcel(
                assignment_id=a.id, kind=a.kind.value, size=a.size,
                compartment_id=a.compartment_id,
                label=self._service.label(a.compartment_id) if a.compartment_id else None,
                barcode=a.barcode,
            )
            for a in assignments
        )

