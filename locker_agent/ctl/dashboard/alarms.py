"""Which events raise an alarm on a locker's tile, and which events or states lift it.

Alarms are not retained on the broker: a dashboard knows those raised while it was running.
Some lift themselves when the locker says the cause is gone (a door that was left open
closes); a tamper alarm (``door_forced``) or lost state stays until an operator
acknowledges it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALARM_EVENTS: Mapping[str, str] = {
    "door_forced": "door forced",
    "door_left_open": "door left open",
    "door_jammed": "door jammed",
    "board_offline": "board offline",
    "outbox_high": "outbox backlog",
    "outbox_overflow": "events dropped",
    "remote_open_alarm": "remote opening locked",
    "state_lost": "state lost",
}
"""Event type → what the tile says."""

ACKNOWLEDGE_ONLY = frozenset({"door_forced", "outbox_overflow", "state_lost"})
"""Alarms only an operator lifts: the locker never says the cause is gone."""

OUTBOX_BACKLOG = 1000
"""Telemetry reporting at least this many unpublished events shows as a backlog alarm."""


@dataclass(frozen=True)
class Alarm:
    kind: str
    compartment_id: str | None
    raised_at: str
    detail: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.compartment_id or ''}"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "label": ALARM_EVENTS.get(self.kind, self.kind),
                "compartment_id": self.compartment_id, "raised_at": self.raised_at,
                "detail": self.detail}


def raised_by(event: Mapping[str, Any]) -> Alarm | None:
    """The alarm an event raises, if it is an alarm event."""
    kind = str(event.get("type"))
    if kind not in ALARM_EVENTS:
        return None
    data = _data(event)
    if kind == "door_jammed" and data.get("retry") is True:
        return None  # pulsed once more; only the final failure is an alarm
    compartment = event.get("compartment_id")
    board = data.get("board")
    if kind == "board_offline" and board is not None:
        compartment = f"board {board}"
    detail = ", ".join(f"{key}={value}" for key, value in sorted(data.items())
                       if key in {"reason", "open_s", "depth", "dropped", "board"})
    return Alarm(kind, str(compartment) if compartment else None, str(event.get("at", "")), detail)


def lifted_by(event: Mapping[str, Any]) -> list[str]:
    """Keys of the alarms an event says are over."""
    kind = event.get("type")
    compartment = event.get("compartment_id") or ""
    data = _data(event)
    if kind == "door_closed":
        return [f"door_left_open:{compartment}"]
    if kind == "door_opened":
        return [f"door_jammed:{compartment}"]
    if kind == "back_in_service":
        return [f"door_jammed:{compartment}"]
    if kind == "remote_open_alarm_cleared":
        return ["remote_open_alarm:"]
    if kind == "board_online":
        return [f"board_offline:board {data.get('board')}"]
    return []


def lifted_by_compartment(compartment_id: str, message: Mapping[str, Any]) -> list[str]:
    """Keys of the alarms a compartment's retained state says are over."""
    lifted = []
    if message.get("door") == "closed":
        lifted.append(f"door_left_open:{compartment_id}")
    if message.get("state") != "out_of_service":
        lifted.append(f"door_jammed:{compartment_id}")  # back in service: the jam was seen to
    return lifted


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}
