"""The customer's side of the kiosk: enter a code, a scan, the doors, the live feed.

Every code goes through the service's one code path (``submit_code``), as from the keypad,
so lockouts, audit and events are the same whatever the input.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from locker_agent.api.context import ApiContext
from locker_agent.api.errors import responses
from locker_agent.api.live import LiveFeed
from locker_agent.api.schemas import (
    CodeRequest,
    DoorStatus,
    KioskLayout,
    Outcome,
    ScanRequest,
    door_place,
)
from locker_agent.app.outcomes import CodeOutcome
from locker_agent.app.ports.hardware import CodeEntry

TYPED_SOURCE = "kiosk"
SCANNED_SOURCE = "kiosk_scan"
RECONNECT_MS = 2000


def outcome_body(context: ApiContext, outcome: CodeOutcome) -> Outcome:
    return Outcome(
        ok=outcome.ok,
        message=outcome.message,
        reason=outcome.reason,
        retry_after_s=outcome.retry_after_s,
        compartments=[door_place(context, c) for c in outcome.compartments],
    )


def door_statuses(context: ApiContext) -> list[DoorStatus]:
    locker = context.service.locker
    return [
        DoorStatus(
            **door_place(context, compartment_id).model_dump(),
            door=compartment.door.value,
            opening=compartment_id in locker.intents,
        )
        for compartment_id, compartment in locker.compartments.items()
    ]


def kiosk_router(context: ApiContext, feed: LiveFeed) -> APIRouter:
    router = APIRouter(
        prefix="/api/kiosk", tags=["kiosk"], responses=responses(400, 413, 422, 500)
    )
    service = context.service

    @router.get("/layout", summary="What the kiosk page needs to draw itself")
    async def layout() -> KioskLayout:
        return KioskLayout(
            locker_id=context.locker_id,
            languages=list(context.languages),
            screen_timeout_s=context.screen_timeout_s,
            courier_mode=context.courier_desk is not None,
            doors=door_statuses(context),
        )

    @router.get("/doors", summary="Every compartment's door and whether it is being opened")
    async def doors() -> list[DoorStatus]:
        return door_statuses(context)

    @router.post("/code", summary="A customer typed a pickup or return code")
    async def enter_code(request: CodeRequest) -> Outcome:
        outcome = await service.submit_code(CodeEntry(TYPED_SOURCE, request.code))
        return outcome_body(context, outcome)

    @router.post("/scan", summary="A code scanned at the kiosk (a QR or barcode payload)")
    async def scan(request: ScanRequest) -> Outcome:
        outcome = await service.submit_code(CodeEntry(SCANNED_SOURCE, request.payload))
        return outcome_body(context, outcome)

    @router.get("/live", response_class=EventSourceResponse, include_in_schema=False)
    async def live() -> AsyncIterable[ServerSentEvent]:
        """Door and flow events as server-sent events (``data`` is a JSON object)."""
        first = True
        async for message in feed.stream():
            yield ServerSentEvent(data=message, retry=RECONNECT_MS if first else None)
            first = False

    return router
