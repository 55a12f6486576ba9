"""Signed QR tokens the locker checks with no network: customer pickup and courier tokens.

A token is ``TOKEN_PREFIX`` followed by the upper-case, unpadded base32 of a compact binary
payload and its Ed25519 signature (``docs/tokens.md`` has the byte layout). Base32 keeps to
the QR alphanumeric alphabet, so a typical pickup token fits a version 8 code at level M.

Verification is strict: a size limit before any decoding, one canonical text per token, the
version and every length checked, no trailing byte, ids limited to the contract's charset.
Whatever the text, :meth:`TokenVerifier.verify` returns a token or raises
:class:`TokenRefused`. Replay protection is the caller's: it keeps a ledger of used
``token_id`` values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import math
import re
import secrets
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TOKEN_PREFIX: Final = "LKT:"
"""What every token starts with (QR alphanumeric characters, so the whole code stays in it)."""

FORMAT_VERSION: Final = 1
PICKUP: Final = 1
COURIER: Final = 2

SIGNING_CONTEXT: Final = b"locker-agent/token\x00"
"""Signed before the payload, so a token signature can never pass for any other signature."""

KEY_ID_BYTES: Final = 2
TOKEN_ID_BYTES: Final = 12
"""96 random bits: unguessable and, in practice, unique."""
SIGNATURE_BYTES: Final = 64
MAX_ID_CHARS: Final = 64
MAX_COURIER_LOCKERS: Final = 32
MAX_TOKEN_BYTES: Final = 300
"""Payload and signature; a longer token is refused by the signer and, unread, by the verifier.
As text that is at most 484 characters, within a serial scanner's default line limit (512)."""
MAX_TOKEN_CHARS: Final = len(TOKEN_PREFIX) + (MAX_TOKEN_BYTES * 8 + 4) // 5
_MAX_SCANNED_CHARS: Final = MAX_TOKEN_CHARS + 8  # room for a scanner's CR/LF around it
_MAX_SECONDS: Final = 2**32 - 1

_HEADER = struct.Struct(f">BB{KEY_ID_BYTES}s{TOKEN_ID_BYTES}s")
_KEY_ID_AT = 2  # after the version and type bytes
_TIME = struct.Struct(">I")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""The MQTT contract's identifier: assignment, courier and locker ids."""
_TOKEN_ID = re.compile(r"[A-Z2-7]{20}")
_BODY = re.compile(r"[A-Z2-7]+")

RefusalReason = Literal[
    "malformed", "bad_signature", "expired", "not_yet_valid", "wrong_locker", "too_long_lived"
]
REFUSAL_REASONS: Final[frozenset[str]] = frozenset(get_args(RefusalReason))

_CUSTOMER_MESSAGES: Final[dict[str, str]] = {
    "malformed": "This code could not be read. Please scan it again.",
    "bad_signature": "This code is not valid.",
    "expired": "This code has expired.",
    "not_yet_valid": "This code is not valid yet.",
    "wrong_locker": "This code is for a different locker.",
    "too_long_lived": "This code is not valid.",
}


@dataclass(frozen=True)
class PickupToken:
    """Lets a customer collect one assignment at one locker until ``expires_at``."""

    token_id: str
    locker_id: str
    assignment_id: str
    expires_at: datetime


@dataclass(frozen=True)
class CourierToken:
    """Identifies a courier at any of ``lockers`` from ``not_before`` until ``expires_at``."""

    token_id: str
    courier_id: str
    lockers: frozenset[str]
    not_before: datetime
    expires_at: datetime


class TokenRefused(Exception):
    """A scanned token that must not be honoured.

    ``reason`` is one of :data:`REFUSAL_REASONS`; ``message`` is short and safe to show a
    customer; ``str()`` adds a detail for the log, which never contains the token itself.
    """

    def __init__(self, reason: RefusalReason, detail: str = "") -> None:
        self.reason: RefusalReason = reason
        self.message = _CUSTOMER_MESSAGES[reason]
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def looks_like_token(text: str) -> bool:
    """Whether a scanned text is meant as a token (cheap; :meth:`TokenVerifier.verify` decides)."""
    return text.lstrip().startswith(TOKEN_PREFIX)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The hex id a token names its signing key by: the start of SHA-256 of the public key."""
    return _key_id(key).hex()


def _key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_BYTES]


# ------------------------------------------------------------------------------- verify


class TokenVerifier:
    """Checks tokens against the configured public keys, for one locker."""

    def __init__(
        self,
        public_keys: Sequence[Ed25519PublicKey],
        locker_id: str,
        *,
        max_courier_validity: timedelta = timedelta(hours=24),
        clock_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        """No keys is allowed: then every token is refused as ``bad_signature``."""
        if not _ID.fullmatch(locker_id):
            raise ValueError(f"locker id {locker_id!r} is not a valid identifier")
        if max_courier_validity <= timedelta(0):
            raise ValueError("max_courier_validity must be positive")
        if clock_skew < timedelta(0):
            raise ValueError("clock_skew cannot be negative")
        self.locker_id = locker_id
        self.max_courier_validity = max_courier_validity
        self.clock_skew = clock_skew
        self._keys: dict[bytes, list[Ed25519PublicKey]] = {}
        for key in public_keys:
            self._keys.setdefault(_key_id(key), []).append(key)

    def verify(self, text: str, *, now: datetime) -> PickupToken | CourierToken:
        """The token ``text`` carries if it is genuine, for this locker and valid at ``now``."""
        moment = _aware(now, "now")
        raw = _decode(text)
        message, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
        token = _parse(message)
        self._check_signature(message, signature)
        if isinstance(token, PickupToken):
            self._check_pickup(token, moment)
        else:
            self._check_courier(token, moment)
        return token

    def _check_signature(self, message: bytes, signature: bytes) -> None:
        key_id_ = message[_KEY_ID_AT : _KEY_ID_AT + KEY_ID_BYTES]
        candidates = self._keys.get(key_id_)
        if not candidates:
            raise TokenRefused("bad_signature", f"signed by key {key_id_.hex()}, not configured")
        for key in candidates:
            try:
                key.verify(signature, SIGNING_CONTEXT + message)
            except InvalidSignature:
                continue
            return
        raise TokenRefused("bad_signature", f"signature does not verify with key {key_id_.hex()}")

    def _check_pickup(self, token: PickupToken, now: datetime) -> None:
        if token.locker_id != self.locker_id:
            raise TokenRefused("wrong_locker", f"issued for locker {token.locker_id}")
        self._check_expiry(token.expires_at, now)

    def _check_courier(self, token: CourierToken, now: datetime) -> None:
        if self.locker_id not in token.lockers:
            raise TokenRefused("wrong_locker", f"not valid at locker {self.locker_id}")
        window = token.expires_at - token.not_before
        if window > self.max_courier_validity:
            raise TokenRefused(
                "too_long_lived", f"valid for {window}, at most {self.max_courier_validity}"
            )
        if now < token.not_before - self.clock_skew:
            raise TokenRefused("not_yet_valid", f"valid from {token.not_before.isoformat()}")
        self._check_expiry(token.expires_at, now)

    def _check_expiry(self, expires_at: datetime, now: datetime) -> None:
        if now >= expires_at + self.clock_skew:
            raise TokenRefused("expired", f"expired at {expires_at.isoformat()}")


def _decode(text: object) -> bytes:
    """The bytes of a token text, refused unless it is the one canonical spelling of them."""
    if not isinstance(text, str) or len(text) > _MAX_SCANNED_CHARS:
        raise TokenRefused("malformed", "not a token text, or too long")
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX) or len(text) > MAX_TOKEN_CHARS:
        raise TokenRefused("malformed", "no token prefix, or too long")
    body = text[len(TOKEN_PREFIX) :]
    if not _BODY.fullmatch(body):
        raise TokenRefused("malformed", "not upper-case base32")
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise TokenRefused("malformed", "not base32") from None
    if _encode(raw) != body:  # a wrong length, or stray bits in the last character
        raise TokenRefused("malformed", "not the canonical base32 of its bytes")
    if len(raw) < _HEADER.size + SIGNATURE_BYTES:
        raise TokenRefused("malformed", "too short")
    return raw


def _parse(message: bytes) -> PickupToken | CourierToken:
    """The token in a payload (signature stripped), with every length and id checked."""
    reader = _Reader(message)
    version, kind, _, token_id = reader.take(_HEADER)
    if version != FORMAT_VERSION:
        raise TokenRefused("malformed", f"format version {version}, expected {FORMAT_VERSION}")
    token: PickupToken | CourierToken
    if kind == PICKUP:
        expires_at = reader.time()
        token = PickupToken(
            token_id=_encode(token_id),
            locker_id=reader.identifier(),
            assignment_id=reader.identifier(),
            expires_at=expires_at,
        )
    elif kind == COURIER:
        not_before, expires_at = reader.time(), reader.time()
        if expires_at <= not_before:
            raise TokenRefused("malformed", "expires before it starts")
        courier_id = reader.identifier()
        lockers = [reader.identifier() for _ in range(reader.count())]
        if any(a >= b for a, b in itertools.pairwise(lockers)):  # ids are ASCII
            raise TokenRefused("malformed", "locker ids not in strictly ascending order")
        token = CourierToken(
            token_id=_encode(token_id),
            courier_id=courier_id,
            lockers=frozenset(lockers),
            not_before=not_before,
            expires_at=expires_at,
        )
    else:
        raise TokenRefused("malformed", f"unknown token type {kind}")
    reader.finish()
    return token


class _Reader:
    """Reads a payload front to back; any shortfall or leftover is ``malformed``."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def _bytes(self, n: int) -> bytes:
        if self._at + n > len(self._data):
            raise TokenRefused("malformed", "truncated")
        chunk = self._data[self._at : self._at + n]
        self._at += n
        return chunk

    def take(self, layout: struct.Struct) -> tuple[int, int, bytes, bytes]:
        version, kind, key, token_id = layout.unpack(self._bytes(layout.size))
        return version, kind, key, token_id

    def time(self) -> datetime:
        (seconds,) = _TIME.unpack(self._bytes(_TIME.size))
        return datetime.fromtimestamp(seconds, UTC)

    def count(self) -> int:
        n = self._bytes(1)[0]
        if not 1 <= n <= MAX_COURIER_LOCKERS:
            raise TokenRefused("malformed", f"{n} lockers, expected 1-{MAX_COURIER_LOCKERS}")
        return n

    def identifier(self) -> str:
        raw = self._bytes(self._bytes(1)[0])
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            raise TokenRefused("malformed", "an id that is not ASCII") from None
        if not _ID.fullmatch(value):
            raise TokenRefused("malformed", "an id outside the identifier charset")
        return value

    def finish(self) -> None:
        if self._at != len(self._data):
            raise TokenRefused("malformed", f"{len(self._data) - self._at} trailing bytes")


# --------------------------------------------------------------------------------- sign


def sign_pickup_token(
    key: Ed25519PrivateKey,
    *,
    locker_id: str,
    assignment_id: str,
    expires_at: datetime,
    token_id: str | None = None,
) -> str:
    """A pickup token for ``assignment_id`` at ``locker_id``, valid until ``expires_at``."""
    body = _time(expires_at, round_up=False) + _field(locker_id) + _field(assignment_id)
    return _sign(key, PICKUP, token_id, body)


def sign_courier_token(
    key: Ed25519PrivateKey,
    *,
    courier_id: str,
    lockers: Iterable[str],
    not_before: datetime,
    expires_at: datetime,
    token_id: str | None = None,
) -> str:
    """A courier token for ``courier_id`` at each of ``lockers`` in the validity window."""
    start, end = _time(not_before, round_up=True), _time(expires_at, round_up=False)
    if end <= start:
        raise ValueError("expires_at must be at least a second after not_before")
    if isinstance(lockers, str):
        raise ValueError("lockers is a collection of locker ids, not one string")
    ordered = sorted(set(lockers))
    if not 1 <= len(ordered) <= MAX_COURIER_LOCKERS:
        raise ValueError(f"a courier token names 1-{MAX_COURIER_LOCKERS} lockers")
    body = start + end + _field(courier_id) + bytes([len(ordered)])
    body += b"".join(_field(locker) for locker in ordered)
    return _sign(key, COURIER, token_id, body)


def new_token_id() -> str:
    """A fresh random token id, as tokens spell it."""
    return _encode(secrets.token_bytes(TOKEN_ID_BYTES))


def _sign(key: Ed25519PrivateKey, kind: int, token_id: str | None, body: bytes) -> str:
    token_id = new_token_id() if token_id is None else token_id
    if not _TOKEN_ID.fullmatch(token_id) or _encode(_b32(token_id)) != token_id:
        raise ValueError("token_id must be one made by new_token_id()")
    message = _HEADER.pack(FORMAT_VERSION, kind, _key_id(key), _b32(token_id)) + body
    raw = message + key.sign(SIGNING_CONTEXT + message)
    if len(raw) > MAX_TOKEN_BYTES:
        raise ValueError(f"the token would be {len(raw)} bytes, over {MAX_TOKEN_BYTES}")
    return TOKEN_PREFIX + _encode(raw)


def _field(value: str) -> bytes:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(
            f"{value!r}: an id is 1-{MAX_ID_CHARS} of A-Z, a-z, 0-9 and _.:-, starting with a "
            "letter or digit"
        )
    raw = value.encode("ascii")
    return bytes([len(raw)]) + raw


def _time(moment: datetime, *, round_up: bool) -> bytes:
    """Whole unix seconds, rounded towards the shorter validity window."""
    stamp = _aware(moment, "a token time").timestamp()
    seconds = math.ceil(stamp) if round_up else math.floor(stamp)
    if not 0 <= seconds <= _MAX_SECONDS:
        raise ValueError(f"{moment.isoformat()} is outside 1970-2106")
    return _TIME.pack(seconds)


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _b32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))
