"""``[tokens]``: the keys signed QR codes are checked against."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from locker_agent.config.fields import Section


class TokensConfig(Section):
    """Signed QR codes (docs/tokens.md), checked at the locker with no network."""

    public_keys: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    """Ed25519 keys (base64 of 32 bytes, or PEM files) the cloud signs tokens with; several
    while a key is being rotated. Empty: signed tokens are refused."""
    max_courier_validity_h: float = Field(default=24, gt=0, le=24 * 31)
    """A courier token valid for longer than this is refused."""
