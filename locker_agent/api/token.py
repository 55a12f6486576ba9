"""The maintenance token: made on first start, kept in the state directory (mode 0600).

Maintenance endpoints want ``Authorization: Bearer <token>``. A wrong or missing token gets
401 with the same body either way, so a caller learns nothing from the refusal.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from locker_agent.api.errors import ApiError

TOKEN_FILE = "api.token"
TOKEN_BYTES = 32
MIN_TOKEN_CHARS = 32


class TokenError(Exception):
    """The token file cannot be used; the message says how to fix it."""


def load_or_create_token(state_dir: Path) -> str:
    """The token in ``state_dir``, made (0600, never overwritten) if there is none."""
    path = state_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def _read(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(
            f"{path} holds no usable token; delete it and restart to make a new one"
        )
    return token


_bearer = HTTPBearer(auto_error=False, description="The token in the state dir's api.token")

TokenCheck = Callable[[HTTPAuthorizationCredentials | None], Awaitable[None]]


def unauthorised() -> ApiError:
    return ApiError(
        401, "Not authorised.", code="unauthorised", headers={"WWW-Authenticate": "Bearer"}
    )


def token_checker(expected: str) -> TokenCheck:
    """A FastAPI dependency that lets a request through only with the right bearer token."""
    expected_bytes = expected.encode()

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected_bytes):
            raise unauthorised()

    return require_token
