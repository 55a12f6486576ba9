"""Courier routes over HTTP, on the real CourierDesk: sign in, list, deposit, problems, sign out."""

from __future__ import annotations

import httpx
import pytest

from locker_agent.domain.model import AssignmentStatus, DoorState
from tests.api.live_agent import HOUR, LiveAgent

COURIER_CODE = "55667788"


def grant_and_reserve(live: LiveAgent, *assignments: tuple[str, str]) -> None:
    """A courier code, and parcels reserved (not yet deposited) with their barcodes."""

    def setup() -> None:
        service = live.agent.service
        now = service.now()
        service.apply(lambda: service.locker.grant_courier(
            "courier-7", code=COURIER_CODE, expires_at=None, now=now))
        for assignment_id, size in assignments:
            service.apply(lambda a=assignment_id, s=size: service.locker.reserve(  # type: ignore[misc]
                a, pickup_code=f"7{abs(hash(a)) % 10**9:09d}", size=s, now=now,
                hold_seconds=72 * HOUR, reservation_ttl_s=24 * HOUR, barcode=f"PKG-{a}",
            ))

    live.call(setup)


def sign_in(client: httpx.Client) -> dict[str, object]:
    body = client.post("/api/kiosk/courier/sign-in", json={"code": COURIER_CODE}).json()
    assert body["ok"] is True, body
    session = body["session"]
    assert isinstance(session, dict)
    return session


def test_layout_offers_courier_mode(client: httpx.Client) -> None:
    assert client.get("/api/kiosk/layout").json()["courier_mode"] is True


def test_a_courier_signs_in_sees_the_list_and_deposits_by_barcode(
    live: LiveAgent, client: httpx.Client
) -> None:
    grant_and_reserve(live, ("p-1", "S"), ("p-2", "M"))
    session = sign_in(client)
    assert session["courier_id"] == "courier-7"
    waiting = {p["barcode"]: p for p in session["to_deposit"]}  # type: ignore[union-attr]
    assert set(waiting) == {"PKG-p-1", "PKG-p-2"}
    sid = session["session_id"]

    step = client.post(f"/api/kiosk/courier/sessions/{sid}/deposit",
                       json={"parcel": "PKG-p-2"}).json()
    assert step["ok"] is True, step
    (opened,) = step["compartments"]
    assert opened["size"] == "M" and opened["label"] in ("12", "14")
    assert [c["id"] for c in step["session"]["open_compartments"]] == [opened["id"]]
    live.wait_for(lambda: live.agent.service.locker.compartments[opened["id"]].door
                  is DoorState.OPEN)
    live.close_door(opened["id"])
    live.wait_for(lambda: live.agent.service.locker.assignments["p-2"].status
                  is AssignmentStatus.DEPOSITED)
    now = client.get(f"/api/kiosk/courier/sessions/{sid}").json()
    assert [p["barcode"] for p in now["to_deposit"]] == ["PKG-p-1"]
    assert now["open_compartments"] == []

    unknown = client.post(f"/api/kiosk/courier/sessions/{sid}/deposit",
                          json={"parcel": "NOT-HERE"}).json()
    assert unknown["ok"] is False and unknown["message"]

    signed_out = client.post(f"/api/kiosk/courier/sessions/{sid}/sign-out")
    assert signed_out.status_code == 200
    gone = client.get(f"/api/kiosk/courier/sessions/{sid}")
    assert gone.status_code == 404 and gone.json()["code"] == "session_expired"
    after = client.post(f"/api/kiosk/courier/sessions/{sid}/deposit", json={"parcel": "PKG-p-1"})
    assert after.status_code == 404


def test_doesnt_fit_opens_the_next_size_up(live: LiveAgent, client: httpx.Client) -> None:
    grant_and_reserve(live, ("p-1", "S"))
    sid = sign_in(client)["session_id"]
    first = client.post(f"/api/kiosk/courier/sessions/{sid}/deposit",
                        json={"parcel": "PKG-p-1"}).json()
    small = first["compartments"][0]
    live.wait_for(lambda: live.agent.service.locker.compartments[small["id"]].door
                  is DoorState.OPEN)
    # reported with the door still open: closing it would complete the deposit
    bigger = client.post(f"/api/kiosk/courier/sessions/{sid}/problem", json={
        "compartment_id": small["id"], "problem": "doesnt_fit"}).json()
    assert bigger["ok"] is True, bigger
    assert bigger["compartments"][0]["size"] == "M"


@pytest.mark.parametrize("body", [
    {"compartment_id": "A01", "problem": "on_fire"},
    {"compartment_id": "../etc", "problem": "doesnt_fit"},
    {"problem": "doesnt_fit"},
])
def test_bad_courier_steps_are_422(client: httpx.Client, body: dict[str, object]) -> None:
    response = client.post("/api/kiosk/courier/sessions/abcdefghijkl/problem", json=body)
    assert response.status_code == 422 and response.json()["code"] == "invalid_input"


def test_wrong_courier_code_and_unknown_session(client: httpx.Client) -> None:
    refused = client.post("/api/kiosk/courier/sign-in", json={"code": "00000000"}).json()
    assert refused["ok"] is False and refused["session"] is None
    missing = client.get("/api/kiosk/courier/sessions/abcdefghijklmnop")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Your courier session has ended. Please sign in again."
    short = client.get("/api/kiosk/courier/sessions/abc")
    assert short.status_code == 422
