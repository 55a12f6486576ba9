"""/healthz and /metrics."""

from __future__ import annotations

import re
import sqlite3
import threading

import httpx

from locker_agent.domain.model import DomainEvent
from tests.api.live_agent import LiveAgent

CODE = "48291377"


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    assert found, f"{name}{{{labels}}} not in metrics"
    return float(found[1])


def test_healthz_reports_each_check_and_mqtt_without_failing_on_it(
    client: httpx.Client,
) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["accepting_codes"] is True
    assert set(body["checks"]) == {"loop_responsive", "database_writable", "hardware_alive",
                                   "storage_writable"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["mqtt"] == {"configured": False, "connected": None}


def test_healthz_fails_while_the_database_cannot_be_written(
    live: LiveAgent, client: httpx.Client
) -> None:
    holder = sqlite3.connect(live.agent.config.database_path, timeout=1)
    holder.execute("BEGIN IMMEDIATE")  # another writer wedged on the file
    try:
        response = client.get("/healthz")
    finally:
        holder.rollback()
        holder.close()
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["database_writable"]["ok"] is False
    assert body["checks"]["hardware_alive"]["ok"] is True
    assert client.get("/healthz").status_code == 200


def test_metrics_count_committed_unlocks_refusals_and_lockouts(
    live: LiveAgent, client: httpx.Client
) -> None:
    compartment = live.deposit("p-1", CODE)
    assert client.post("/api/kiosk/code", json={"code": CODE}).json()["ok"]
    live.wait_for(lambda: any(
        e.type == "unlock_pulsed" and e.data.get("purpose") == "pickup"
        for e in live.agent.store.all_events()
    ) and live.agent.service.locker.compartments[compartment].door.value == "open")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert metric(text, "locker_unlocks_total", 'purpose="pickup"') == 1
    assert metric(text, "locker_unlocks_total", 'purpose="deposit"') == 1
    assert metric(text, "locker_doors_open") == 1
    assert metric(text, "locker_outbox_depth") > 0
    assert metric(text, "locker_compartments", 'state="free"') == 5
    assert "locker_mqtt_connected" not in text  # no cloud link configured
    assert 0 <= metric(text, "locker_event_loop_lag_seconds") < 1.0
    assert "_created" not in text

    def refusal_and_lockout() -> None:
        service = live.agent.service
        now = service.now()
        service.apply(lambda: [
            DomainEvent("code_refused", now, data={"source": "kiosk", "reason": "unknown"}),
            DomainEvent("code_lockout", now, data={"scope": "input", "source": "kiosk",
                                                   "retry_after_s": 60}),
        ])

    live.call(refusal_and_lockout)
    live.close_door(compartment)
    live.wait_for(lambda: "p-1" not in live.agent.service.locker.assignments)
    text = client.get("/metrics").text
    assert metric(text, "locker_code_refusals_total", 'reason="unknown",source="kiosk"') == 1
    assert metric(text, "locker_code_lockouts_total", 'scope="input"') == 1
    assert metric(text, "locker_doors_open") == 0
    assert metric(text, "locker_events_total", 'type="picked_up"') == 1


def test_requests_run_on_the_agents_loop_thread(live: LiveAgent, client: httpx.Client) -> None:
    loop_thread = live.call(threading.get_ident)
    seen: list[int] = []
    live.call(lambda: live.agent.service.subscribe(lambda _: seen.append(threading.get_ident())))
    live.deposit("p-1", CODE)
    client.post("/api/kiosk/code", json={"code": CODE})
    assert seen and set(seen) == {loop_thread}
