"""The API's request and response bodies (they are its OpenAPI schema, checked in tests)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from locker_agent.api.context import ApiContext

CODE_MIN = 4
CODE_MAX = 300
PRINTABLE_ASCII = r"^[\x20-\x7E]+$"

Code = Annotated[
    str,
    Field(
        min_length=CODE_MIN, max_length=CODE_MAX, pattern=PRINTABLE_ASCII,
        description="What was typed or scanned: 4-300 printable ASCII characters.",
    ),
]
CompartmentId = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")]
Reason = Annotated[str, Field(min_length=1, max_length=200, pattern=PRINTABLE_ASCII)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error the API gives: a message a kiosk can show, a stable code, maybe a field."""

    message: str
    code: str
    field: str | None = None


class CodeRequest(StrictBody):
    code: Code


class ScanRequest(StrictBody):
    payload: Code


class DoorPlace(BaseModel):
    id: str
    label: str
    size: str
    row: int | None = None
    column: int | None = None


class Outcome(BaseModel):
    """What happened to a code or a courier step; ``message`` is in English, ``reason`` is
    stable so the kiosk can show its own translation."""

    ok: bool
    message: str
    reason: str | None = None
    retry_after_s: float | None = None
    compartments: list[DoorPlace] = []


def door_place(context: ApiContext, compartment_id: str) -> DoorPlace:
    place = context.place(compartment_id)
    return DoorPlace(
        id=compartment_id, label=place.label, size=place.size, row=place.row, column=place.column
    )


class DoorStatus(DoorPlace):
    door: Literal["open", "closed", "unknown"]
    opening: bool
    """An unlock is in progress (requested, pulsed, or open and not yet closed)."""


class KioskLayout(BaseModel):
    locker_id: str
    languages: list[str]
    screen_timeout_s: float
    courier_mode: bool
    """Whether courier sign-in is offered on this locker."""
    doors: list[DoorStatus]


class OpenRequest(StrictBody):
    reason: Reason


class ServiceRequest(StrictBody):
    in_service: bool
    reason: Reason | None = None


class ActionResult(BaseModel):
    ok: bool
    message: str
    events: list[str]
    """Types of the events the action committed, in order."""


class AuditEntry(BaseModel):
    id: int
    event_id: str
    type: str
    at: datetime
    compartment_id: str | None
    assignment_id: str | None
    data: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before_id: int | None
    """Pass as ``before_id`` for the next (older) page; null at the end."""


class OutboxStatus(BaseModel):
    depth: int
    """Events not yet acknowledged by the broker."""
    last_seq: int


class Check(BaseModel):
    ok: bool
    detail: str


class MqttHealth(BaseModel):
    configured: bool
    connected: bool | None


class Health(BaseModel):
    locker_id: str
    """Which locker answers (doctor tells this agent from another program on the port)."""
    ok: bool
    accepting_codes: bool
    checks: dict[str, Check]
    mqtt: MqttHealth
    """Reported, never fatal: the locker works offline."""
