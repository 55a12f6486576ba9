"""The test suite's operator: one signing key the test lockers trust, and their identities.

Every locker a test writes a config for trusts :data:`OPERATOR_KEY` (see ``write_config``),
and :func:`locker_key` reads a running locker's identity key from its state directory, so the
test cloud signs every command and seals every code as a real back end must.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from locker_agent.contract.sealing import load_locker_key
from locker_agent.contract.signing import public_key_base64
from locker_agent.ctl.client import FleetClient, seal_and_sign

OPERATOR_KEY = Ed25519PrivateKey.generate()
OPERATOR_PUBLIC = public_key_base64(OPERATOR_KEY)

STATE_DIRS: dict[str, Path] = {}
"""Where each test locker keeps its state, by locker id (written by ``write_config``)."""


def locker_key(locker_id: str) -> X25519PublicKey | None:
    """The identity key a test locker made at start (None before it started)."""
    state_dir = STATE_DIRS.get(locker_id)
    if state_dir is None:
        return None
    try:
        document = json.loads((state_dir / "identity.pub").read_text())
    except (OSError, ValueError):
        return None
    return load_locker_key(document["public_key"])


def as_operator(client: FleetClient) -> FleetClient:
    """``client`` signing with the test operator's key and sealing to the test lockers."""
    client.signing_key = OPERATOR_KEY
    client.locker_keys = locker_key
    return client


def as_operator_document(
    locker_id: str, name: str, document: dict[str, Any], *,
    key: Ed25519PrivateKey | None = OPERATOR_KEY, seal: bool = True,
) -> dict[str, Any]:
    """An envelope as the test operator sends it: codes sealed, signed (unless told not)."""
    return seal_and_sign(locker_id, name, document, sign_with=key,
                         seal_for=locker_key(locker_id) if seal else None)
