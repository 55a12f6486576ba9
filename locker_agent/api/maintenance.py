"""Maintenance over HTTP, for a technician at the locker: open a door, take one out of service,
read the audit log and the outbox. Every route wants the bearer token (:mod:`.token`).

Openings are recorded like any other (``unlock_requested`` with actor ``maintenance`` and the
reason given) before the relay moves, so the audit log says who opened what and why.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from locker_agent.api.context import ApiContext
from locker_agent.api.errors import responses
from locker_agent.api.schemas import (
    ActionResult,
    AuditEntry,
    AuditPage,
    DoorStatus,
    OpenRequest,
    OutboxStatus,
    ServiceRequest,
)
from locker_agent.api.token import token_checker
from locker_agent.app.ports.storage import AuditRecord
from locker_agent.domain.model import DomainEvent

ACTOR = "maintenance"
AUDIT_PAGE_MAX = 500

CompartmentPath = Annotated[
    str, Path(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
]


class CompartmentStatus(DoorStatus):
    state: str
    out_of_service_reason: str | None


def maintenance_router(context: ApiContext) -> APIRouter:
    router = APIRouter(
        prefix="/api/maintenance",
        tags=["maintenance"],
        dependencies=[Depends(token_checker(context.maintenance_token))],
        responses=responses(400, 401, 413, 422, 500),
    )
    service = context.service

    def act(summary: str, transition: Any) -> ActionResult:
        stored = service.apply(transition)  # a refusal: the app's DomainError handler
        return ActionResult(ok=True, message=summary, events=[e.type for e in stored])

    @router.get("/compartments", summary="Every compartment: state, door, service")
    async def compartments() -> list[CompartmentStatus]:
        locker = service.locker
        result = []
        for compartment_id, compartment in locker.compartments.items():
            place = context.place(compartment_id)
            result.append(CompartmentStatus(
                id=compartment_id, label=place.label, size=compartment.size, row=place.row,
                column=place.column, door=compartment.door.value,
                opening=compartment_id in locker.intents,
                state=locker.state_of(compartment_id).value,
                out_of_service_reason=compartment.out_of_service_reason,
            ))
        return result

    @router.post("/compartments/{compartment_id}/open", responses=responses(404, 409),
                 summary="Open one compartment, with the reason on record")
    async def open_compartment(
        compartment_id: CompartmentPath, request: OpenRequest
    ) -> ActionResult:
        def transition() -> list[DomainEvent]:
            return service.locker.begin_operator_open(
                compartment_id, actor=ACTOR, reason=request.reason, now=service.now(),
                source="maintenance_api",
            )

        label = context.place(compartment_id).label
        return act(f"Compartment {label} is opening.", transition)

    @router.put("/compartments/{compartment_id}/service", responses=responses(404, 409),
                summary="Take one compartment out of service (with a reason) or back in")
    async def set_service(
        compartment_id: CompartmentPath, request: ServiceRequest
    ) -> ActionResult:
        def transition() -> list[DomainEvent]:
            return service.locker.set_compartment_service(
                compartment_id, in_service=request.in_service, reason=request.reason,
                now=service.now(),
            )

        label = context.place(compartment_id).label
        state = "back in service" if request.in_service else "out of service"
        return act(f"Compartment {label} is {state}.", transition)

    @router.get("/audit", summary="The locker's audit log, newest first")
    async def audit(
        limit: Annotated[int, Query(ge=1, le=AUDIT_PAGE_MAX)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        type: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
    ) -> AuditPage:
        rows = service.store.audit_page(limit=limit + 1, before_id=before_id, type=type)
        entries = [_entry(row) for row in rows[:limit]]
        more = len(rows) > limit
        return AuditPage(entries=entries, next_before_id=entries[-1].id if more else None)

    @router.get("/outbox", summary="Events not yet acknowledged by the broker")
    async def outbox() -> OutboxStatus:
        store = service.store
        return OutboxStatus(depth=store.outbox_depth(), last_seq=store.last_seq())

    return router


def _entry(record: AuditRecord) -> AuditEntry:
    try:
        data = json.loads(record.payload)  # type: ignore[arg-type]  # None is caught below
    except (TypeError, ValueError):
        data = {}
    return AuditEntry(
        id=record.id, event_id=record.event_id, type=record.type, at=record.at,
        compartment_id=record.compartment_id, assignment_id=record.assignment_id,
        data=data if isinstance(data, dict) else {"value": data},
    )

