"""What a command must prove before the locker acts on it: its signer, and codes only it reads.

:class:`OperatorKeys` checks the Ed25519 signature of every command but ``ping`` against the
operator keys the locker holds (by key id, so keys can be rotated). :class:`CodeSealing` opens
the code fields sealed to this locker's identity key and refuses codes sent in clear where
sealing is required. Both raise :class:`CommandRefused`; neither writes anything, so a forged
command leaves no trace on disk and cannot block the genuine command with the same id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel

from locker_agent.contract import messages as c
from locker_agent.contract.sealing import SealError, is_sealed, unseal
from locker_agent.contract.signing import canonical_command, key_id, verify

_CLEAR_CODE = re.compile(r"[A-Za-z0-9]{4,32}")

M = TypeVar("M", bound=BaseModel)


class CommandRefused(Exception):
    """A command that cannot be applied; becomes an error reply."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class OperatorKeys:
    """The operator public keys commands must be signed with, by key id."""

    def __init__(
        self, keys: Sequence[Ed25519PublicKey], *, allow_unsigned: bool = False
    ) -> None:
        self._keys = {key_id(k): k for k in keys}
        self.allow_unsigned = allow_unsigned and not self._keys
        """Only ever without keys: a locker that has one never takes an unsigned command,
        whatever a leftover setting or an environment variable says."""

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def check(self, locker_id: str, name: str, raw: Mapping[str, Any]) -> None:
        """Refuse ``raw`` unless it is signed by one of the keys (or needs no signature)."""
        if name in c.UNSIGNED_COMMANDS:
            return
        signature = raw.get("signature")
        if self.allow_unsigned and signature is None:
            return
        named = raw.get("key_id")
        if named is not None:
            key = self._keys.get(named) if isinstance(named, str) else None
            if key is None:
                raise CommandRefused(
                    "unknown_key",
                    f"key {str(named)[:20]!r} is not one of this locker's operator keys",
                    "key_id",
                )
            candidates = [key]
        else:
            candidates = list(self._keys.values())
        message = canonical_command(
            locker_id, name, raw.get("id"), raw.get("expires_at"), raw.get("args") or {},
            named,
        )
        if not any(verify(key, message, signature if isinstance(signature, str) else None)
                   for key in candidates):
            raise CommandRefused(
                "bad_signature",
                f"{name} must carry a valid signature by one of this locker's operator keys",
                "signature",
            )


class CodeSealing:
    """Opens codes sealed to this locker; refuses clear ones where sealing is required."""

    def __init__(
        self, identity: X25519PrivateKey | None, *, locker_id: str, required: bool
    ) -> None:
        self._identity = identity
        self._locker_id = locker_id
        self.required = required

    def open(self, name: str, args: M) -> M:
        """``args`` with every code field in clear, ready for the domain."""
        clear: dict[str, str] = {}
        for field in c.CODE_FIELDS.get(name, ()):
            value = getattr(args, field)
            where = f"args.{field}"
            if is_sealed(value):
                clear[field] = self._unseal(value, field, where)
            elif self.required:
                raise CommandRefused(
                    "code_not_sealed",
                    f"{where} must be sealed to this locker's identity key "
                    "(locker-agent identity prints it)",
                    where,
                )
        return args.model_copy(update=clear) if clear else args

    def _unseal(self, value: str, field: str, where: str) -> str:
        if self._identity is None:
            raise CommandRefused("invalid", f"{where}: this locker has no identity key", where)
        try:
            code = unseal(value, self._identity, locker_id=self._locker_id, field=field)
        except SealError as exc:
            raise CommandRefused("invalid", f"{where}: cannot be unsealed: {exc}", where) from None
        if _CLEAR_CODE.fullmatch(code) is None:
            raise CommandRefused("invalid", f"{where}: must be 4-32 letters or digits", where)
        return code
