"""Codes are never stored: only their HMAC-SHA256 under a per-locker secret.

The kind is mixed into the hash, so a pickup code and a courier code that happen to be the same
digits are different credentials. Comparison runs over every candidate with
:func:`hmac.compare_digest` and no early exit, so timing does not tell how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from locker_agent.domain.model import Credential, CredentialKind

MIN_SECRET_BYTES = 32


class CodeHasher:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the locker secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def digest(self, kind: CredentialKind, code: str) -> str:
        message = f"{kind.value}:{code}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def find_matching(candidates: Iterable[Credential], digest: str) -> list[Credential]:
    """Every candidate whose digest equals ``digest``, comparing each in constant time."""
    matches = []
    for credential in candidates:
        if hmac.compare_digest(credential.digest, digest):
            matches.append(credential)
    return matches
