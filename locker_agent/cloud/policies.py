"""Policies the cloud may change at run time (``set_config``), kept across restarts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from locker_agent.config import Policies


@dataclass(frozen=True)
class RuntimePolicies:
    hold_period_h: float
    reservation_ttl_h: float
    remote_open_limit: int
    remote_open_window_s: float
    telemetry_interval_s: float

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
        )
        known = {k: v for k, v in (overrides or {}).items() if k in base.as_dict()}
        return replace(base, **known)

    def with_changes(self, changes: Mapping[str, Any]) -> RuntimePolicies:
        return replace(self, **dict(changes))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
