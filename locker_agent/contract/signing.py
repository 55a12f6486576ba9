"""Ed25519 signatures on commands.

A signature covers the *canonical command*: the JSON object

    {"args": ..., "command": NAME, "expires_at": "...", "id": "...", "locker_id": "..."}

(plus ``"key_id"`` when the envelope names its key) with keys sorted, no whitespace
(``separators=(",", ":")``) and ASCII escapes, where ``args``, ``expires_at``, ``id`` and
``key_id`` are exactly as sent. Naming the locker means a signed command cannot be replayed
to another locker; the id and the inbox mean it cannot be replayed to this one.

A key is named by its id, :func:`key_id`: the first 8 bytes of SHA-256 of the raw public key,
in hex. A locker holds several operator keys while one is being rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(ValueError):
    """A key file or value that is not an Ed25519 key."""


KEY_ID_PATTERN = r"^[0-9a-f]{16}$"


def canonical_command(
    locker_id: str,
    name: str,
    id_: object,
    expires_at: object,
    args: Mapping[str, Any] | object,
    key_id: object = None,
) -> bytes:
    document = {
        "args": dict(args) if isinstance(args, Mapping) else args,
        "command": name,
        "expires_at": expires_at,
        "id": id_,
        "locker_id": locker_id,
    }
    if key_id is not None:
        document["key_id"] = key_id
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The id a command names its signing key by (16 hex digits)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(value: str) -> Ed25519PublicKey:
    """A public key from base64 of its 32 raw bytes, or from a PEM file's path."""
    if value.strip().startswith("-----BEGIN") or Path(value).is_file():
        pem = value if value.strip().startswith("-----BEGIN") else Path(value).read_text()
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("the operator public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise SigningKeyError("the operator public key is neither a PEM file nor base64") from exc
    if len(raw) != 32:
        raise SigningKeyError(f"an Ed25519 public key is 32 bytes; this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return key


def public_key_base64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def verify(key: Ed25519PublicKey, message: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
