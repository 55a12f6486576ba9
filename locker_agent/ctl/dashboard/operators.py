"""Who may sign in to the dashboard: the operators file, one token of their own each.

The operators file is JSON, written by ``locker-ctl dashboard-operator`` (mode 0600, replaced
atomically)::

    {
      "format": 1,
      "operators": {
        "ops-anna": {"added_at": "2025-06-02T08:15:00Z", "kdf": "scrypt",
                     "n": 16384, "r": 8, "p": 1,
                     "salt": "<16 random bytes, base64>", "hash": "<32 bytes, base64>"}
      }
    }

A token is ``{name}.{secret}``: the operator's name, a dot, then 32 random bytes
(base64url). Only ``scrypt(secret, salt)`` is kept; the token itself is printed once, when it
is made, and is stored nowhere. The name in the token says which entry to check, so signing in
costs one scrypt whatever the number of operators, and the name recorded with every command
is the one the token is bound to: a token for ``ops-anna`` signs in ``ops-anna`` and nobody
else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT = 1
OPERATOR_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
"""As the contract's ``operator`` identifier: the name recorded with every door opened."""
SECRET_BYTES = 32
SALT_BYTES = 16
HASH_BYTES = 32
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt's interactive-login cost: about 0.1 s and 16 MiB on a depot laptop."""
MAX_SCRYPT_MEMORY = 64 * 1024 * 1024
"""An entry asking scrypt for more memory than this is refused, not computed."""
MAX_TOKEN_LENGTH = 256


class OperatorsFileError(Exception):
    """The operators file cannot be read, or is not what this module writes."""


@dataclass(frozen=True)
class Credential:
    """One operator's entry: the scrypt hash of their token's secret, never the secret."""

    name: str
    salt: bytes
    digest: bytes
    added_at: str
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    def matches(self, secret: str) -> bool:
        """Is ``secret`` this operator's? Compared in constant time."""
        return hmac.compare_digest(_scrypt(secret, self.salt, self.n, self.r, self.p),
                                   self.digest)

    def as_json(self) -> dict[str, Any]:
        return {"added_at": self.added_at, "kdf": "scrypt", "n": self.n, "r": self.r,
                "p": self.p, "salt": _b64(self.salt), "hash": _b64(self.digest)}


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES,
                          maxmem=MAX_SCRYPT_MEMORY + 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def valid_name(name: str) -> bool:
    return bool(OPERATOR_PATTERN.match(name))


def split_token(token: str) -> tuple[str, str] | None:
    """``(name, secret)`` of a token, or None if it cannot be one."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    name, dot, secret = token.strip().rpartition(".")
    if not dot or not secret or not valid_name(name):
        return None
    return name, secret


def issue(name: str, *, now: datetime | None = None) -> tuple[str, Credential]:
    """A fresh token for ``name`` and the entry that recognises it."""
    if not valid_name(name):
        raise ValueError(f"{name!r} is not a valid operator name: 1-64 letters, digits and "
                         "_.:- starting with a letter or digit")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    added = (now or datetime.now(UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    credential = Credential(name, salt, _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P),
                            added)
    return f"{name}.{secret}", credential


# ---------------------------------------------------------------------- the file


def load(path: Path) -> dict[str, Credential]:
    """Every operator in the file; OperatorsFileError says what is wrong with it."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OperatorsFileError(f"{path}: no such file (make it with locker-ctl "
                                 "dashboard-operator add NAME --file PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OperatorsFileError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OperatorsFileError(f"{path} is writable by others, who could add an operator: "
                                 f"chmod 600 {path}")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise OperatorsFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT \
            or not isinstance(document.get("operators"), dict):
        raise OperatorsFileError(f"{path}: not an operators file of format {FORMAT} "
                                 '({"format": 1, "operators": {...}})')
    return {name: _entry(path, name, entry) for name, entry in document["operators"].items()}


def _entry(path: Path, name: str, entry: object) -> Credential:
    def wrong(why: str) -> OperatorsFileError:
        return OperatorsFileError(f"{path}: operator {name!r}: {why}")

    if not valid_name(name):
        raise wrong("not a valid operator name (1-64 letters, digits and _.:-)")
    if not isinstance(entry, dict) or entry.get("kdf") != "scrypt":
        raise wrong('not an entry with "kdf": "scrypt"')
    n, r, p = entry.get("n"), entry.get("r"), entry.get("p")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p)):
        raise wrong("n, r and p must be integers")
    assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
    if not (2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
            and 128 * n * r <= MAX_SCRYPT_MEMORY):
        raise wrong(f"scrypt parameters out of range (n={n}, r={r}, p={p})")
    try:
        salt = base64.b64decode(str(entry.get("salt")), validate=True)
        digest = base64.b64decode(str(entry.get("hash")), validate=True)
    except (binascii.Error, ValueError):
        raise wrong("salt and hash must be base64") from None
    if len(salt) < SALT_BYTES or len(digest) != HASH_BYTES:
        raise wrong(f"a salt of at least {SALT_BYTES} bytes and a hash of {HASH_BYTES} "
                    "are needed")
    return Credential(name, salt, digest, str(entry.get("added_at", "")), n, r, p)


def save(path: Path, operators: Mapping[str, Credential]) -> None:
    """Write the file whole, mode 0600, replacing the old one in one step."""
    document = {"format": FORMAT,
                "operators": {name: operators[name].as_json() for name in sorted(operators)}}
    directory = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add(path: Path, name: str, *, replace: bool = False) -> str:
    """Add ``name`` (or, with ``replace``, give them a new token); return the token."""
    operators = load(path) if path.exists() else {}
    if name in operators and not replace:
        raise OperatorsFileError(f"{name} is already an operator in {path} (--replace gives "
                                 "them a new token and ends their sessions)")
    token, credential = issue(name)
    save(path, {**operators, name: credential})
    return token


def remove(path: Path, name: str) -> bool:
    """Take ``name`` out of the file; False if they were not in it."""
    operators = load(path)
    if operators.pop(name, None) is None:
        return False
    save(path, operators)
    return True


# ---------------------------------------------------------------------- at sign-in


_NOBODY = Credential("nobody", b"\0" * SALT_BYTES, b"\0" * HASH_BYTES, "")
"""Checked against when the token names no operator, so that costs the same time."""


class Operators:
    """The operators file as the running dashboard sees it, read again when it changes.

    A file that turns unreadable or invalid while the dashboard runs lets nobody in (it is
    logged) until it is fixed: a broken file must not keep a removed operator signed in.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._hashing = threading.Lock()
        self._operators = load(path)
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode

    def refresh(self) -> None:
        """Read the file again if it changed since it was last read."""
        stamp = self._stamp()
        with self._lock:
            if stamp == self._seen:
                return
            self._seen = stamp
            try:
                self._operators = load(self.path)
            except OperatorsFileError as exc:
                logger.error("the operators file is unusable; nobody can sign in: %s", exc)
                self._operators = {}
            else:
                logger.info("operators file read again: %d operators", len(self._operators))

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._operators)

    def credential(self, name: str) -> Credential | None:
        with self._lock:
            return self._operators.get(name)

    def verify(self, token: str) -> Credential | None:
        """The entry ``token`` belongs to, or None. One scrypt at a time, however many ask."""
        parts = split_token(token)
        name, secret = parts if parts is not None else ("", token[:MAX_TOKEN_LENGTH])
        found = self.credential(name) if name else None
        with self._hashing:
            matches = (found or _NOBODY).matches(secret)
        return found if found is not None and matches else None

    def holds(self, credential: Credential) -> bool:
        """Is this entry still in the file (not removed, not given a new token)?"""
        return self.credential(credential.name) == credential
