"""Codes sealed to one locker, so the broker and its subscribers never see them.

A code field in a command (``pickup_code``, ``return_code``, a courier's ``code``) carries
``sealed:`` followed by base64url (no padding) of::

    version (1 byte, 1) | ephemeral X25519 public key (32) | nonce (12) | ciphertext + tag

The sender makes a fresh X25519 key pair per code and agrees a secret with the locker's
identity key; ``HKDF-SHA256(secret, salt = ephemeral public || locker public,
info = "locker-agent sealed code v1")`` gives a 32-byte ChaCha20-Poly1305 key. The associated
data binds the locker id and the field, so a sealed code opens on no other locker and in no
other field. Only the locker, with its private key (``identity.key`` in its state directory,
0600), can open it. This is the ECIES pattern; every primitive comes from ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEALED_PREFIX = "sealed:"
SEALED_PATTERN = r"^sealed:[A-Za-z0-9_-]{80,200}$"
"""What a sealed code looks like on the wire (a 4-32 character code seals to 94-131 characters)."""
_VERSION = 1
_INFO = b"locker-agent sealed code v1"
_NONCE_BYTES = 12
_KEY_BYTES = 32


class SealError(ValueError):
    """A sealed code that this locker cannot open (another locker's, another field's, damaged)."""


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal(code: str, locker_key: X25519PublicKey, *, locker_id: str, field: str) -> str:
    """Seal ``code`` for the locker ``locker_id`` whose identity public key is ``locker_key``."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw(ephemeral.public_key())
    key = _derive(ephemeral.exchange(locker_key), ephemeral_public, _raw(locker_key))
    nonce = os.urandom(_NONCE_BYTES)
    sealed = ChaCha20Poly1305(key).encrypt(
        nonce, code.encode("utf-8"), _associated_data(locker_id, field)
    )
    body = bytes([_VERSION]) + ephemeral_public + nonce + sealed
    return SEALED_PREFIX + base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def unseal(value: str, identity: X25519PrivateKey, *, locker_id: str, field: str) -> str:
    """Open a sealed code with the locker's identity key; :class:`SealError` says why not."""
    if not is_sealed(value):
        raise SealError("not a sealed code")
    text = value[len(SEALED_PREFIX):]
    try:
        body = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SealError("not base64url") from None
    if len(body) < 1 + _KEY_BYTES + _NONCE_BYTES + 16 or body[0] != _VERSION:
        raise SealError("not a version 1 sealed code")
    ephemeral_public = body[1 : 1 + _KEY_BYTES]
    nonce = body[1 + _KEY_BYTES : 1 + _KEY_BYTES + _NONCE_BYTES]
    sealed = body[1 + _KEY_BYTES + _NONCE_BYTES :]
    try:
        secret = identity.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _derive(secret, ephemeral_public, _raw(identity.public_key()))
        clear = ChaCha20Poly1305(key).decrypt(nonce, sealed, _associated_data(locker_id, field))
        return clear.decode("utf-8")
    except (InvalidTag, ValueError, UnicodeDecodeError):
        raise SealError("sealed for another locker or another field, or damaged") from None


def public_key_text(key: X25519PublicKey) -> str:
    """A locker's identity public key as enrolment takes it: base64 of the 32 raw bytes."""
    return base64.b64encode(_raw(key)).decode("ascii")


def load_locker_key(text: str) -> X25519PublicKey:
    """An identity public key from base64 of its 32 raw bytes (as ``locker-agent identity``)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealError("a locker key is base64 of 32 bytes") from None
    if len(raw) != _KEY_BYTES:
        raise SealError(f"a locker key is 32 bytes; this one is {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def fingerprint(key: X25519PublicKey) -> str:
    """SHA-256 of the raw public key, grouped for reading aloud at enrolment."""
    digest = hashlib.sha256(_raw(key)).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(secret: bytes, ephemeral_public: bytes, locker_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=ephemeral_public + locker_public,
        info=_INFO,
    ).derive(secret)


def _associated_data(locker_id: str, field: str) -> bytes:
    return b"locker-agent/sealed-code/v1\0" + locker_id.encode() + b"\0" + field.encode()
