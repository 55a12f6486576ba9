"""The locker's identity key: the X25519 key pair that codes are sealed to.

Made at the first start and kept in the state directory (``identity.key``, mode 0600, like
the code-hashing secret). Its public half is enrolled with the cloud, which seals every code
it sends to it: ``locker-agent identity`` prints it with a fingerprint to read back, and it is
also written to ``identity.pub`` beside the key (public, for tools on the same machine).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from locker_agent.contract.sealing import fingerprint, public_key_text
from locker_agent.runtime.secret import load_secret

IDENTITY_FILE = "identity.key"
PUBLIC_FILE = "identity.pub"


@dataclass(frozen=True)
class Identity:
    locker_id: str
    key: X25519PrivateKey

    @property
    def public_key(self) -> str:
        return public_key_text(self.key.public_key())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key.public_key())

    def describe(self) -> dict[str, str]:
        return {"locker_id": self.locker_id, "public_key": self.public_key,
                "fingerprint": self.fingerprint}


def load_identity(state_dir: Path, locker_id: str, *, create: bool = True) -> Identity:
    """The locker's identity, made (and its public half written) if there is none yet.

    Raises :class:`~locker_agent.runtime.secret.SecretError` for a key file that cannot be
    used (unreadable, readable by others, too short).
    """
    if create:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    raw = load_secret(state_dir / IDENTITY_FILE, create=create)
    identity = Identity(locker_id, X25519PrivateKey.from_private_bytes(raw[:32]))
    _write_public(state_dir / PUBLIC_FILE, identity)
    return identity


def _write_public(path: Path, identity: Identity) -> None:
    text = json.dumps(identity.describe(), indent=2) + "\n"
    try:
        if path.exists() and path.read_text() == text:
            return
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        os.chmod(temporary, 0o644)
        temporary.replace(path)
    except OSError:
        pass  # a convenience copy: the key itself is what matters
