"""Policies the cloud may change at run time (``set_config``), kept across restarts.

The locker's own config file sets the safety floors: ``set_config`` may lower the number of
remote openings allowed and lengthen their window, never the other way (a broker attacker who
could loosen them could open every door). Overrides kept from earlier are clamped to the
floors of the config in force, so tightening the file takes effect at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from locker_agent.config import Policies


class LooseningRefused(ValueError):
    """A change that would loosen a safety limit the locker's config file sets."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RuntimePolicies:
    hold_period_h: float
    reservation_ttl_h: float
    remote_open_limit: int
    remote_open_window_s: float
    telemetry_interval_s: float
    max_remote_open_limit: int
    """The config file's limit: the cloud may lower it, never raise it."""
    min_remote_open_window_s: float
    """The config file's window: the cloud may lengthen it, never shorten it."""

    @classmethod
    def from_config(
        cls, policies: Policies, overrides: Mapping[str, Any] | None = None
    ) -> RuntimePolicies:
        base = cls(
            hold_period_h=policies.hold_period_h,
            reservation_ttl_h=policies.reservation_ttl_h,
            remote_open_limit=policies.remote_open_limit,
            remote_open_window_s=policies.remote_open_window_s,
            telemetry_interval_s=policies.telemetry_interval_s,
            max_remote_open_limit=policies.remote_open_limit,
            min_remote_open_window_s=policies.remote_open_window_s,
        )
        known = {k: v for k, v in (overrides or {}).items() if k in _SETTABLE}
        merged = replace(base, **known)
        return replace(
            merged,
            remote_open_limit=min(merged.remote_open_limit, base.max_remote_open_limit),
            remote_open_window_s=max(merged.remote_open_window_s, base.min_remote_open_window_s),
        )

    def with_changes(self, changes: Mapping[str, Any]) -> RuntimePolicies:
        """The policies with ``changes``; :class:`LooseningRefused` if one loosens a floor."""
        limit = changes.get("remote_open_limit")
        if limit is not None and limit > self.max_remote_open_limit:
            raise LooseningRefused(
                "remote_open_limit",
                f"may only be lowered: this locker's config allows at most "
                f"{self.max_remote_open_limit} remote openings per window",
            )
        window = changes.get("remote_open_window_s")
        if window is not None and window < self.min_remote_open_window_s:
            raise LooseningRefused(
                "remote_open_window_s",
                f"may only be lengthened: this locker's config sets at least "
                f"{self.min_remote_open_window_s:g} s",
            )
        return replace(self, **{k: v for k, v in changes.items() if k in _SETTABLE})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SETTABLE = frozenset({
    "hold_period_h", "reservation_ttl_h", "remote_open_limit", "remote_open_window_s",
    "telemetry_interval_s",
})
"""What set_config may change (the floors themselves come only from the config file)."""
