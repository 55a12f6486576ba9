"""The courier's side of the kiosk: sign in, see what is waiting, deposit, report, collect.

The session logic lives in :mod:`locker_agent.app.courier_desk`; these routes only carry it over
HTTP.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from locker_agent.api.context import ApiContext
from locker_agent.api.errors import responses
from locker_agent.api.kiosk import TYPED_SOURCE
from locker_agent.api.schemas import (
    PRINTABLE_ASCII,
    CodeRequest,
    CompartmentId,
    DoorPlace,
    Outcome,
    StrictBody,
    door_place,
)
from locker_agent.app.courier_desk import CourierDesk, Problem
from locker_agent.app.outcomes import CodeOutcome, CourierView
from locker_agent.app.outcomes import WaitingParcel as Waiting
from locker_agent.app.ports.hardware import CodeEntry

# --- bodies ------------------------------------------------------------------------------------


class WaitingParcel(BaseModel):
    assignment_id: str
    kind: str
    size: str
    compartment: DoorPlace | None
    barcode: str | None


class CourierSession(BaseModel):
    session_id: str
    courier_id: str
    to_deposit: list[WaitingParcel]
    returns_to_collect: list[WaitingParcel]
    expired_to_reclaim: list[WaitingParcel]
    open_compartments: list[DoorPlace]
    idle_expires_in_s: float


class CourierOutcome(Outcome):
    session: CourierSession | None = None


class DepositRequest(StrictBody):
    parcel: Annotated[str, Field(
        min_length=1, max_length=300, pattern=PRINTABLE_ASCII,
        description="The parcel's barcode, as scanned, or its assignment id.",
    )]


class ProblemRequest(StrictBody):
    compartment_id: CompartmentId
    problem: Problem


SessionId = Annotated[str, Path(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


def session_body(context: ApiContext, view: CourierView) -> CourierSession:
    def parcels(items: tuple[Waiting, ...]) -> list[WaitingParcel]:
        return [
            WaitingParcel(
                assignment_id=p.assignment_id, kind=p.kind, size=p.size, barcode=p.barcode,
                compartment=door_place(context, p.compartment_id) if p.compartment_id else None,
            )
            for p in items
        ]

    return CourierSession(
        session_id=view.session_id,
        courier_id=view.courier_id,
        to_deposit=parcels(view.to_deposit),
        returns_to_collect=parcels(view.returns_to_collect),
        expired_to_reclaim=parcels(view.expired_to_reclaim),
        open_compartments=[door_place(context, c) for c in view.open_compartments],
        idle_expires_in_s=max(0.0, view.idle_expires_in_s),
    )


def courier_outcome(context: ApiContext, outcome: CodeOutcome) -> CourierOutcome:
    view: CourierView | None = outcome.courier
    return CourierOutcome(
        ok=outcome.ok,
        message=outcome.message,
        reason=outcome.reason,
        retry_after_s=outcome.retry_after_s,
        compartments=[door_place(context, c) for c in outcome.compartments],
        session=session_body(context, view) if view is not None else None,
    )


def courier_router(context: ApiContext, desk: CourierDesk) -> APIRouter:
    router = APIRouter(
        prefix="/api/kiosk/courier", tags=["courier"],
        responses=responses(400, 413, 422, 500),
    )
    session_errors = responses(404, 409)

    @router.post("/sign-in", summary="A courier signs in with a courier code or QR")
    async def sign_in(request: CodeRequest) -> CourierOutcome:
        return courier_outcome(context, await desk.sign_in(CodeEntry(TYPED_SOURCE, request.code)))

    @router.get("/sessions/{session_id}", responses=session_errors,
                summary="What is waiting for the signed-in courier")
    async def session(session_id: SessionId) -> CourierSession:
        return session_body(context, desk.view(session_id))

    @router.post("/sessions/{session_id}/deposit", responses=session_errors,
                 summary="Open the compartment for a scanned parcel")
    async def deposit(session_id: SessionId, request: DepositRequest) -> CourierOutcome:
        return courier_outcome(context, await desk.deposit(session_id, request.parcel))

    @router.post("/sessions/{session_id}/problem", responses=session_errors,
                 summary="The parcel does not fit, or the door is broken")
    async def problem(session_id: SessionId, request: ProblemRequest) -> CourierOutcome:
        outcome = await desk.report_problem(session_id, request.compartment_id, request.problem)
        return courier_outcome(context, outcome)

    @router.post("/sessions/{session_id}/collect-returns", responses=session_errors,
                 summary="Open every compartment holding a return for this courier")
    async def collect_returns(session_id: SessionId) -> CourierOutcome:
        return courier_outcome(context, await desk.collect_returns(session_id))

    @router.post("/sessions/{session_id}/reclaim-expired", responses=session_errors,
                 summary="Open every compartment holding an expired parcel")
    async def reclaim_expired(session_id: SessionId) -> CourierOutcome:
        return courier_outcome(context, await desk.reclaim_expired(session_id))

    @router.post("/sessions/{session_id}/sign-out", summary="End the courier's session")
    async def sign_out(session_id: SessionId) -> Outcome:
        desk.sign_out(session_id)
        return Outcome(ok=True, message="Signed out.")

    return router
