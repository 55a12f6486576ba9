"""``[security]``: who may command this locker, how codes reach it, what time it trusts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from locker_agent.config.fields import Section


class SecurityConfig(Section):
    operator_public_keys: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list
    )
    """Ed25519 keys (base64 of 32 bytes, or PEM files) whose signatures the locker accepts on
    commands; several while one is being rotated (docs/security.md). Every command but ping
    must be signed by one of them."""
    allow_unsigned_commands: bool = False
    """Accept commands without a signature. Only for a closed test bench: anyone who can
    publish on the broker could then command the locker. Without it, a locker with the cloud
    link on and no operator key refuses to start."""
    require_sealed_codes: bool | None = None
    """Refuse codes sent in clear in commands; unset: required whenever the locker has an
    operator key. Sealed codes are encrypted to this locker's identity key."""
    wall_clock: Literal["synchronised", "trusted"] = "synchronised"
    """"synchronised": trust the wall clock only once the kernel reports it synchronised
    (NTP); until then signed QR tokens and command expiries are refused. "trusted": the
    board has a battery-backed clock (or the time is managed otherwise): trust it from boot."""
    release_limit: int = Field(default=3, ge=0, le=100)
    """Parcels already inside that commands may cancel within release_window_s; one more is
    held back with an alarm (a cancelled parcel inside is taken out by a courier)."""
    release_window_s: float = Field(default=3600, gt=0, le=7 * 86400)
    collision_alarm_after: int = Field(default=3, ge=1, le=100)
    """New codes colliding with live ones (accepted silently, not registered) within an hour
    that raise a code_collision_alarm."""
