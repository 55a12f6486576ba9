"""Operators sign in with the dashboard's token; a session cookie keeps them signed in.

Reading needs a session too: the page shows every locker's occupancy, alarms and assignment
ids, and the event stream would hand them to anyone who can reach the port. Sessions live in
memory (a restart signs everyone out) and expire; the cookie is HttpOnly and SameSite=Strict,
and writes must be JSON, which a cross-site form cannot send.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

SESSION_COOKIE = "locker_dashboard_session"
SESSION_TTL_S = 12 * 3600
MIN_TOKEN_LENGTH = 12
OPERATOR_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
"""As the contract's ``operator`` identifier: the name recorded with every door opened."""


class WeakToken(ValueError):
    """The configured token is too short to stand between the network and the doors."""


@dataclass(frozen=True)
class Session:
    operator: str
    expires: float


class Sessions:
    def __init__(self, token: str, *, ttl_s: float = SESSION_TTL_S) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise WeakToken(f"the dashboard token must be at least {MIN_TOKEN_LENGTH} characters")
        self._token = token.encode()
        self._ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def token_matches(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self._token)

    def sign_in(self, operator: str, token: str) -> str | None:
        """A new session id if ``token`` is right and ``operator`` a valid name, else None."""
        if not OPERATOR_PATTERN.match(operator) or not self.token_matches(token):
            return None
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._prune()
            self._sessions[session_id] = Session(operator, time.monotonic() + self._ttl_s)
        return session_id

    def operator(self, session_id: str | None) -> str | None:
        """Who holds this session, if it is live."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.expires < time.monotonic():
                self._sessions.pop(session_id, None)
                return None
            return session.operator

    def sign_out(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[key]
