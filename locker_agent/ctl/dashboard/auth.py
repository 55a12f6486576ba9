"""Operators sign in with a token of their own; a session cookie keeps them signed in.

Reading needs a session too: the page shows every locker's occupancy, alarms and assignment
ids, and the event stream would hand them to anyone who can reach the port. Sessions live in
memory (a restart signs everyone out) and expire; the cookie is HttpOnly and SameSite=Strict,
and writes must be JSON, which a cross-site form cannot send.

A session belongs to the operators file's entry that opened it: removing that operator, or
giving them a new token, ends it (see :meth:`Sessions.sweep`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from locker_agent.ctl.dashboard.operators import Credential, Operators

SESSION_COOKIE = "locker_dashboard_session"
SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    credential: Credential
    expires: float

    @property
    def operator(self) -> str:
        return self.credential.name


class Sessions:
    def __init__(self, operators: Operators, *, ttl_s: float = SESSION_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.operators = operators
        self._ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def sign_in(self, token: str) -> tuple[str, str] | None:
        """``(session id, operator name)`` if ``token`` is an operator's, else None.

        Blocks for one scrypt: call it off the event loop.
        """
        self.operators.refresh()  # an operator added a moment ago can sign in at once
        credential = self.operators.verify(token)
        if credential is None:
            return None
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session_id] = Session(credential, self._clock() + self._ttl_s)
        return session_id, credential.name

    def operator(self, session_id: str | None) -> str | None:
        """Who holds this session, if it is live."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if not self._live(session):
                del self._sessions[session_id]
                return None
            return session.operator

    def sign_out(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def sweep(self) -> list[str]:
        """End the sessions that expired or whose operator was removed; return their ids."""
        with self._lock:
            ended = [key for key, session in self._sessions.items() if not self._live(session)]
            for key in ended:
                del self._sessions[key]
        return ended

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _live(self, session: Session) -> bool:
        return session.expires > self._clock() and self.operators.holds(session.credential)
