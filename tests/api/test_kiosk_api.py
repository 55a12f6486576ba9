"""Kiosk endpoints over real HTTP: codes, scans, doors, the live feed, and bad input."""

from __future__ import annotations

import json

import httpx
import pytest

from locker_agent.domain.model import DoorState
from tests.api.live_agent import LiveAgent

CODE = "48291377"


def test_layout_gives_every_door_with_its_place(client: httpx.Client) -> None:
    layout = client.get("/api/kiosk/layout").json()
    assert layout["locker_id"] == "kiosk-test"
    assert layout["languages"] == ["en", "ru", "zh-Hant", "it"]
    assert layout["courier_mode"] is True  # the agent has a courier desk
    door = next(d for d in layout["doors"] if d["id"] == "A03")
    assert door == {"id": "A03", "label": "12", "size": "M", "row": 2, "column": 1,
                    "door": "closed", "opening": False}


def test_a_code_opens_its_compartment_and_says_where(live: LiveAgent, client: httpx.Client) -> None:
    compartment = live.deposit("p-1", CODE)
    response = client.post("/api/kiosk/code", json={"code": CODE})
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["compartments"] == [
        {"id": compartment, "label": "1", "size": "S", "row": 1, "column": 1}
    ]
    assert "close the door" in body["message"]
    live.wait_for(lambda: live.agent.service.locker.compartments[compartment].door
                  is DoorState.OPEN)
    doors = {d["id"]: d for d in client.get("/api/kiosk/doors").json()}
    assert doors[compartment]["door"] == "open" and doors[compartment]["opening"] is True
    again = client.post("/api/kiosk/code", json={"code": CODE}).json()
    assert again["ok"] is False


def test_a_wrong_code_is_refused_with_a_reason_and_opens_nothing(
    live: LiveAgent, client: httpx.Client
) -> None:
    live.deposit("p-1", CODE)
    pulses = live.call(lambda: list(live.agent.simulator.pulses) if live.agent.simulator else [])
    body = client.post("/api/kiosk/code", json={"code": "11112222"}).json()
    assert body["ok"] is False and body["reason"] and body["message"]
    assert body["compartments"] == []
    assert live.call(
        lambda: list(live.agent.simulator.pulses) if live.agent.simulator else []
    ) == pulses


def test_a_scanned_payload_goes_through_the_same_code_path(
    live: LiveAgent, client: httpx.Client
) -> None:
    compartment = live.deposit("p-1", CODE)
    body = client.post("/api/kiosk/scan", json={"payload": CODE}).json()
    assert body["ok"] is True and body["compartments"][0]["id"] == compartment
    refused = client.post("/api/kiosk/scan", json={"payload": "LKR1.not-a-token"}).json()
    assert refused["ok"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "123"}, "code"),                      # too short
        ({"code": "1" * 301}, "code"),                  # too long
        ({"code": "1234\n5678"}, "code"),               # not printable
        ({"code": "12345678é"}, "code"),                # not ASCII
        ({"code": 12345678}, "code"),                   # not a string
        ({}, "code"),                                   # missing
        ({"code": "12345678", "extra": 1}, "extra"),    # unknown key
    ],
)
def test_bad_codes_get_a_422_with_a_message_for_the_screen(
    client: httpx.Client, body: dict[str, object], field: str
) -> None:
    response = client.post("/api/kiosk/code", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "invalid_input"
    assert error["field"] == field
    assert error["message"] and "Input should" not in error["message"]


def test_not_json_and_too_large_and_unknown_paths_are_json_errors(client: httpx.Client) -> None:
    not_json = client.post("/api/kiosk/code", content=b"{code", headers={
        "content-type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["message"] == "The request is not valid JSON."

    too_large = client.post("/api/kiosk/code", content=b"x" * 5000, headers={
        "content-type": "application/json"})
    assert too_large.status_code == 413
    assert too_large.json() == {
        "message": "The request is too large.", "code": "too_large", "field": None}

    def chunks() -> object:
        yield b'{"code": "'
        for _ in range(10):
            yield b"1" * 1000
        yield b'"}'

    chunked = client.post("/api/kiosk/code", content=chunks(),  # type: ignore[arg-type]
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413

    missing = client.get("/api/kiosk/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong_method = client.get("/api/kiosk/code")
    assert wrong_method.status_code == 405 and wrong_method.json()["message"]


def test_the_page_is_served_with_a_policy_that_forbids_outside_fetches(
    client: httpx.Client,
) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/kiosk/"
    page = client.get("/kiosk/")
    assert page.status_code == 200 and "kiosk.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for lang in ("en", "ru", "zh-Hant", "it"):
        texts = client.get(f"/kiosk/i18n/{lang}.json").json()
        assert set(texts) == set(client.get("/kiosk/i18n/en.json").json()), lang


def test_the_live_feed_pushes_door_events_without_assignment_ids(
    live: LiveAgent, client: httpx.Client
) -> None:
    compartment = live.deposit("p-1", CODE)
    seen: list[dict[str, object]] = []
    with client.stream("GET", "/api/kiosk/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                assert json.loads(line[5:]) == {"type": "hello"}
                break
        with httpx.Client(base_url=live.url) as other:
            assert other.post("/api/kiosk/code", json={"code": CODE}).json()["ok"]
        for line in lines:
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            seen.append(message)
            if message["type"] == "door_opened":
                live.close_door(compartment)
            if message["type"] == "picked_up":
                break
    types = [m["type"] for m in seen]
    assert types.index("unlock_requested") < types.index("door_opened") < types.index(
        "door_closed") < types.index("picked_up")
    opened = seen[types.index("door_opened")]
    assert opened["compartment"] == {
        "id": compartment, "label": "1", "size": "S", "row": 1, "column": 1}
    assert opened["purpose"] == "pickup"
    assert all("assignment" not in json.dumps(m) for m in seen)
    assert CODE not in json.dumps(seen)
