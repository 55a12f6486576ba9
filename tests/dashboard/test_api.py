"""The dashboard's API against a real Mosquitto and a real (simulated-hardware) agent."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from locker_agent.domain.model import DoorState
from tests.cloud.harness import AgentThread
from tests.dashboard.conftest import (
    REAL_FRONT,
    REAL_LOCKER,
    Dashboard,
    DashboardFactory,
    OperatorsFile,
)


@pytest.fixture
def signed_dashboard(make_dashboard: DashboardFactory, real_agent: AgentThread,
                     operator_key: Ed25519PrivateKey) -> Dashboard:
    dashboard = make_dashboard(sign_with=operator_key)
    dashboard.wait_for_locker(REAL_LOCKER, 6)
    return dashboard


@pytest.fixture
def http(signed_dashboard: Dashboard) -> Iterator[TestClient]:
    with TestClient(signed_dashboard.app) as client:
        yield client


def sign_in(http: TestClient, token: str) -> None:
    response = http.post("/api/session", json={"token": token})
    assert response.status_code == 200, response.text


def door(agent: AgentThread, compartment_id: str) -> DoorState:
    assert agent.agent is not None and agent.agent.simulator is not None
    simulator = agent.agent.simulator
    return agent.call(lambda: simulator.read()[compartment_id])


def test_nothing_is_shown_or_done_without_signing_in(
    http: TestClient, operators_file: OperatorsFile
) -> None:
    assert http.get("/api/fleet").status_code == 401
    assert http.get(f"/api/lockers/{REAL_LOCKER}").status_code == 401
    assert http.get("/api/stream").status_code == 401
    response = http.post(f"/api/lockers/{REAL_LOCKER}/open",
                         json={"compartment_id": "A01", "reason": "x"})
    assert response.status_code == 401
    anna, ben = operators_file.tokens["ops-anna"], operators_file.tokens["ops-ben"]
    ben_secret = ben.rpartition(".")[2]
    # (each failure costs half a second; tests/dashboard/test_sessions.py tries many more)
    for wrong in ("guess-guess-guess", f"ops-anna.{ben_secret}"):
        assert http.post("/api/session", json={"token": wrong}).status_code == 401, wrong
    # the page no longer says who signs in: the token does
    assert http.post("/api/session",
                     json={"operator": "ops-ben", "token": anna}).status_code == 422
    assert http.get("/api/fleet").status_code == 401
    # the page itself (no data in it) loads, to offer the sign-in form
    assert "sign-in" in http.get("/").text


def test_the_snapshot_shows_the_real_locker(http: TestClient, token: str) -> None:
    sign_in(http, token)
    assert http.get("/api/session").json() == {"operator": "ops-anna"}
    lockers = {s["id"]: s for s in http.get("/api/fleet").json()["lockers"]}
    tile = lockers[REAL_LOCKER]
    assert tile["online"] is True
    assert tile["compartments"] == 6
    assert tile["free_by_size"] == {"S": 3, "M": 1, "L": 1, "XL": 1}
    detail = http.get(f"/api/lockers/{REAL_LOCKER}").json()
    assert [c["id"] for c in detail["compartments"]] == ["A01", "A02", "A03", "A04", "A05", "A06"]
    # the agent publishes where each door is, from its config's row and column
    assert {c["id"]: (c["row"], c["column"]) for c in detail["compartments"]} == REAL_FRONT
    assert http.get("/api/lockers/nowhere").status_code == 404


def test_open_reaches_the_locker_its_door_opens_and_a_refusal_is_explained(
    http: TestClient, signed_dashboard: Dashboard, real_agent: AgentThread, token: str
) -> None:
    sign_in(http, token)
    assert door(real_agent, "A03") == DoorState.CLOSED
    response = http.post(f"/api/lockers/{REAL_LOCKER}/open",
                         json={"compartment_id": "A03", "reason": "customer stuck"})
    body = response.json()
    assert response.status_code == 200 and body["ok"], body
    assert body["reply"]["result"]["compartment_id"] == "A03"
    deadline = time.monotonic() + 5
    while door(real_agent, "A03") != DoorState.OPEN:
        assert time.monotonic() < deadline, "the door did not open"
        time.sleep(0.02)
    # the dashboard learns it from the locker's retained state
    deadline = time.monotonic() + 5
    while http.get(f"/api/lockers/{REAL_LOCKER}").json()["summary"]["doors_open"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # the operator is recorded with the opening
    events = http.get("/api/fleet").json()["events"]
    requested = [e for e in events if e["type"] == "unlock_requested"]
    assert requested and requested[-1]["data"]["actor"] == "operator:ops-anna"

    # two remote openings per hour on this locker: the third is refused by the locker itself
    assert http.post(f"/api/lockers/{REAL_LOCKER}/open",
                     json={"compartment_id": "A04", "reason": "check"}).json()["ok"]
    refused = http.post(f"/api/lockers/{REAL_LOCKER}/open",
                        json={"compartment_id": "A05", "reason": "check"})
    body = refused.json()
    assert refused.status_code == 200 and body["ok"] is False
    assert body["code"] == "remote_open_refused"
    assert "remote-open policy" in body["message"] and "Nothing was opened" in body["message"]
    assert door(real_agent, "A05") == DoorState.CLOSED
    # and the alarm it trips shows on the tile
    deadline = time.monotonic() + 5
    while not any(a["kind"] == "remote_open_alarm" for a in
                  http.get(f"/api/lockers/{REAL_LOCKER}").json()["summary"]["alarms"]):
        assert time.monotonic() < deadline, "no remote_open_alarm on the tile"
        time.sleep(0.05)
    # an operator may acknowledge it on the dashboard (the locker's lockout stays until a
    # signed clear_alarm)
    ack = f"/api/lockers/{REAL_LOCKER}/alarms/remote_open_alarm:/acknowledge"
    assert http.post(ack).status_code == 200
    assert http.get(f"/api/lockers/{REAL_LOCKER}").json()["summary"]["alarms"] == []
    assert http.post(ack).status_code == 404


def test_an_unsigned_dashboard_is_refused_where_the_locker_wants_signatures(
    make_dashboard: DashboardFactory, real_agent: AgentThread, token: str
) -> None:
    dashboard = make_dashboard(sign_with=None)
    dashboard.wait_for_locker(REAL_LOCKER, 6)
    with TestClient(dashboard.app) as http:
        sign_in(http, token)
        body = http.post(f"/api/lockers/{REAL_LOCKER}/open",
                         json={"compartment_id": "A01", "reason": "x"}).json()
        assert body["ok"] is False and body["code"] == "bad_signature"
        assert "--sign-key" in body["message"]
    assert door(real_agent, "A01") == DoorState.CLOSED


def test_service_and_sync(http: TestClient, operators_file: OperatorsFile) -> None:
    sign_in(http, operators_file.tokens["ops-ben"])
    missing = http.post(f"/api/lockers/{REAL_LOCKER}/service",
                        json={"compartment_id": "A02", "in_service": False})
    assert missing.status_code == 422 and "why" in missing.json()["detail"]
    out = http.post(f"/api/lockers/{REAL_LOCKER}/service",
                    json={"compartment_id": "A02", "in_service": False, "reason": "broken hinge"})
    assert out.json()["ok"], out.json()
    deadline = time.monotonic() + 5
    while True:
        cells = {c["id"]: c for c in http.get(f"/api/lockers/{REAL_LOCKER}").json()["compartments"]}
        if cells["A02"]["state"] == "out_of_service":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cells["A02"]["out_of_service_reason"] == "broken hinge (ops-ben)"
    whole = http.post(f"/api/lockers/{REAL_LOCKER}/service",
                      json={"in_service": False, "reason": "cleaning"})
    assert whole.json()["reply"]["result"]["in_service"] is False
    back = http.post(f"/api/lockers/{REAL_LOCKER}/service", json={"in_service": True})
    assert back.json()["ok"]
    sync = http.post(f"/api/lockers/{REAL_LOCKER}/sync").json()
    assert sync["ok"] and len(sync["reply"]["result"]["compartments"]) == 6
    assert http.post("/api/lockers/nowhere/sync").status_code == 404
    bad = http.post(f"/api/lockers/{REAL_LOCKER}/open",
                    json={"compartment_id": "../../x", "reason": "x"})
    assert bad.status_code == 422


def test_a_write_another_site_made_the_browser_send_is_refused(
    http: TestClient, token: str
) -> None:
    sign_in(http, token)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example"}):
        refused = http.post(f"/api/lockers/{REAL_LOCKER}/sync", headers=headers)
        assert refused.status_code == 403, headers
    same = http.post(f"/api/lockers/{REAL_LOCKER}/sync",
                     headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"})
    assert same.status_code == 200


def test_the_stream_starts_with_a_snapshot_and_then_sends_only_changes(
    signed_dashboard: Dashboard, serve, real_agent: AgentThread, token: str  # type: ignore[no-untyped-def]
) -> None:
    url = serve(signed_dashboard.app)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/api/session", json={"token": token}).status_code == 200
        with client.stream("GET", "/api/stream") as stream:
            frames = stream.iter_lines()
            kinds: list[tuple[str, dict[str, object]]] = []
            event = None
            for line in frames:
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    kinds.append((event, json.loads(line[6:])))
                    if event == "snapshot":
                        client.post(f"/api/lockers/{REAL_LOCKER}/service", json={
                            "compartment_id": "A06", "in_service": False, "reason": "wet"})
                    elif any(c.get("id") == "A06" and c.get("state") == "out_of_service"
                             for c in kinds[-1][1]["compartments"]):  # type: ignore[union-attr]
                        break
    assert kinds[0][0] == "snapshot"
    assert any(s["id"] == REAL_LOCKER for s in kinds[0][1]["lockers"])  # type: ignore[union-attr]
    batches = [body for kind, body in kinds[1:] if kind == "batch"]
    assert batches
    for batch in batches:  # never the whole fleet again: one locker changed
        assert [s["id"] for s in batch["lockers"]] in ([REAL_LOCKER], [])  # type: ignore[union-attr]


def test_the_page_loads_nothing_from_outside_and_cannot_be_framed(http: TestClient) -> None:
    page = http.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
