"""Maintenance endpoints: the bearer token, opening one door, service, audit log, outbox."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from locker_agent.api.token import TOKEN_FILE, TokenError, load_or_create_token
from locker_agent.config import load_config
from locker_agent.domain.model import DoorState
from locker_agent.runtime.daemon import build_agent
from locker_agent.runtime.errors import StartupError
from tests.api.live_agent import LiveAgent, write_locker

ROUTES = [
    ("GET", "/api/maintenance/compartments", None),
    ("POST", "/api/maintenance/compartments/A01/open", {"reason": "inspection"}),
    ("PUT", "/api/maintenance/compartments/A01/service", {"in_service": False, "reason": "x"}),
    ("GET", "/api/maintenance/audit", None),
    ("GET", "/api/maintenance/outbox", None),
]


def auth(live: LiveAgent) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.token}"}


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer"])
def test_a_missing_or_wrong_token_gets_401_and_no_hint(
    live: LiveAgent, client: httpx.Client, method: str, path: str, body: object,
    header: str | None,
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"message": "Not authorised.", "code": "unauthorised", "field": None}
    assert response.headers["www-authenticate"] == "Bearer"
    assert live.door("A01") is DoorState.CLOSED
    assert live.call(lambda: live.agent.service.locker.compartments["A01"].in_service)


def test_the_token_is_made_once_kept_0600_and_survives_a_restart(tmp_path: Path) -> None:
    config = write_locker(tmp_path)
    with LiveAgent(config) as live:
        first = live.token
    path = tmp_path / "state" / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 40
    with LiveAgent(config) as live:
        assert live.token == first
        with httpx.Client(base_url=live.url) as http:
            assert http.get("/api/maintenance/outbox", headers=auth(live)).status_code == 200


def test_a_token_file_others_can_read_stops_the_start(tmp_path: Path, clean_env: None) -> None:
    state = tmp_path / "state"
    state.mkdir()
    load_or_create_token(state)
    (state / TOKEN_FILE).chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        load_or_create_token(state)
    with pytest.raises(StartupError, match="api token"):
        build_agent(load_config(write_locker(tmp_path)))


def test_open_one_compartment_records_who_and_why_then_the_door_opens(
    live: LiveAgent, client: httpx.Client
) -> None:
    response = client.post(
        "/api/maintenance/compartments/A03/open", json={"reason": "customer left keys"},
        headers=auth(live),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["events"] == ["unlock_requested"]
    assert body["message"] == "Compartment 12 is opening."
    live.wait_for(lambda: live.agent.service.locker.compartments["A03"].door is DoorState.OPEN)
    audit = client.get("/api/maintenance/audit", params={"type": "unlock_requested"},
                       headers=auth(live)).json()
    entry = audit["entries"][0]
    assert entry["compartment_id"] == "A03"
    assert entry["data"]["actor"] == "maintenance"
    assert entry["data"]["reason"] == "customer left keys"
    assert entry["data"]["purpose"] == "operator"


def test_open_refuses_an_unknown_compartment_and_a_blank_reason(
    live: LiveAgent, client: httpx.Client
) -> None:
    unknown = client.post("/api/maintenance/compartments/Z99/open", json={"reason": "x"},
                          headers=auth(live))
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_compartment"
    blank = client.post("/api/maintenance/compartments/A01/open", json={"reason": ""},
                        headers=auth(live))
    assert blank.status_code == 422 and blank.json()["field"] == "reason"
    bad_id = client.post("/api/maintenance/compartments/..%2Fx/open", json={"reason": "x"},
                         headers=auth(live))
    assert bad_id.status_code in (404, 422)
    assert live.call(lambda: dict(live.agent.service.locker.intents)) == {}


def test_out_of_service_and_back_with_the_audit_log_paging(
    live: LiveAgent, client: httpx.Client
) -> None:
    out = client.put("/api/maintenance/compartments/A02/service",
                     json={"in_service": False, "reason": "hinge loose"}, headers=auth(live))
    assert out.status_code == 200 and out.json()["events"] == ["out_of_service"]
    no_reason = client.put("/api/maintenance/compartments/A02/service",
                           json={"in_service": False}, headers=auth(live))
    assert no_reason.status_code == 200 and no_reason.json()["events"] == []  # already out
    listed = {c["id"]: c for c in client.get(
        "/api/maintenance/compartments", headers=auth(live)).json()}
    assert listed["A02"]["state"] == "out_of_service"
    assert listed["A02"]["out_of_service_reason"] == "hinge loose"
    needs_reason = client.put("/api/maintenance/compartments/A01/service",
                              json={"in_service": False}, headers=auth(live))
    assert needs_reason.status_code == 409 and needs_reason.json()["field"] == "reason"
    back = client.put("/api/maintenance/compartments/A02/service",
                      json={"in_service": True}, headers=auth(live))
    assert back.json()["events"] == ["back_in_service"]

    first = client.get("/api/maintenance/audit", params={"limit": 1}, headers=auth(live)).json()
    assert [e["type"] for e in first["entries"]] == ["back_in_service"]
    older = client.get("/api/maintenance/audit", params={
        "limit": 1, "before_id": first["next_before_id"]}, headers=auth(live)).json()
    assert [e["type"] for e in older["entries"]] == ["out_of_service"]
    too_many = client.get("/api/maintenance/audit", params={"limit": 100000}, headers=auth(live))
    assert too_many.status_code == 422


def test_outbox_depth_counts_unpublished_events(live: LiveAgent, client: httpx.Client) -> None:
    before = client.get("/api/maintenance/outbox", headers=auth(live)).json()
    live.deposit("p-1", "48291377")
    after = client.get("/api/maintenance/outbox", headers=auth(live)).json()
    assert after["depth"] > before["depth"]  # no broker here: nothing is acknowledged
    assert after["last_seq"] >= after["depth"]
