"""The dashboard's fleet state, fed with the payloads real lockers publish."""

from __future__ import annotations

import json
from typing import Any

from locker_agent.ctl.dashboard.fleet import Fleet
from tests.conftest import REPO
from tests.dashboard.fleet_sim import SimulatedLocker, front_of, simulated_locker


def feed(fleet: Fleet, topic: str, document: dict[str, Any] | bytes, *,
         retained: bool = False) -> None:
    payload = document if isinstance(document, bytes) else json.dumps(document).encode()
    fleet.ingest(f"lockers/{topic}", payload, retained=retained)


def load(fleet: Fleet, locker: SimulatedLocker) -> None:
    feed(fleet, f"{locker.locker_id}/status", locker.status, retained=True)
    for cid, view in locker.compartments.items():
        feed(fleet, f"{locker.locker_id}/compartments/{cid}", view, retained=True)


def tile(fleet: Fleet, locker_id: str) -> dict[str, Any]:
    found = fleet.locker(locker_id)
    assert found is not None
    summary: dict[str, Any] = found["summary"]
    return summary


def test_a_tile_sums_up_the_retained_state() -> None:
    fleet = Fleet()
    load(fleet, simulated_locker("L-1", compartments=24, reserved=3, out_of_service=1))
    summary = tile(fleet, "L-1")
    assert summary["online"] is True
    assert summary["compartments"] == 24
    assert summary["free_by_size"] == {"S": 3, "M": 6, "L": 6, "XL": 5}
    assert summary["total_by_size"] == {"S": 6, "M": 6, "L": 6, "XL": 6}
    assert (summary["reserved"], summary["out_of_service"], summary["occupied"]) == (3, 1, 0)
    assert summary["alarms"] == []


def test_only_what_changed_is_drained_and_only_once() -> None:
    fleet = Fleet()
    lockers = [simulated_locker(f"L-{n}") for n in range(3)]
    for locker in lockers:
        load(fleet, locker)
    first = fleet.drain()
    assert first is not None and len(first["lockers"]) == 3
    assert len(first["compartments"]) == 72
    assert fleet.drain() is None
    view = {**lockers[1].compartments["C05"], "door": "open"}
    feed(fleet, "L-1/compartments/C05", view)
    batch = fleet.drain()
    assert batch is not None
    assert [s["id"] for s in batch["lockers"]] == ["L-1"]
    assert [(c["locker_id"], c["id"], c["door"]) for c in batch["compartments"]] == [
        ("L-1", "C05", "open")]
    assert batch["lockers"][0]["doors_open"] == 1


def test_alarms_are_raised_by_events_and_lifted_when_the_cause_is_gone() -> None:
    fleet = Fleet()
    locker = simulated_locker("L-1")
    load(fleet, locker)
    feed(fleet, "L-1/events", locker.event("door_left_open", "C02", open_s=120, alarm=1))
    feed(fleet, "L-1/events", locker.event("door_forced", "C07"))
    feed(fleet, "L-1/events", locker.event("door_jammed", "C09", attempt=1, retry=True))
    kinds = {(a["kind"], a["compartment_id"]) for a in tile(fleet, "L-1")["alarms"]}
    assert kinds == {("door_left_open", "C02"), ("door_forced", "C07")}  # a retry is no alarm
    feed(fleet, "L-1/events", locker.event("door_jammed", "C09", attempt=2, retry=False))
    feed(fleet, "L-1/events", locker.event("door_closed", "C02"))
    feed(fleet, "L-1/events", locker.event("door_closed", "C07"))
    kinds = {(a["kind"], a["compartment_id"]) for a in tile(fleet, "L-1")["alarms"]}
    # a tamper alarm stays until an operator acknowledges it
    assert kinds == {("door_forced", "C07"), ("door_jammed", "C09")}
    assert fleet.acknowledge("L-1", "door_forced:C07")
    assert not fleet.acknowledge("L-1", "door_forced:C07")
    feed(fleet, "L-1/events", locker.event("back_in_service", "C09"))
    assert tile(fleet, "L-1")["alarms"] == []


def test_an_outbox_backlog_and_a_board_offline_show_and_clear() -> None:
    fleet = Fleet()
    locker = simulated_locker("L-1")
    load(fleet, locker)
    telemetry = {"at": "2026-01-01T00:00:00Z", "uptime_s": 5, "outbox_depth": 5000,
                 "free_by_size": {}, "errors": {}, "mqtt_reconnects": 0}
    feed(fleet, "L-1/telemetry", telemetry)
    feed(fleet, "L-1/events", locker.event("board_offline", None, board=2))
    summary = tile(fleet, "L-1")
    assert summary["outbox_depth"] == 5000
    assert {a["key"] for a in summary["alarms"]} == {"outbox_high:", "board_offline:board 2"}
    feed(fleet, "L-1/telemetry", {**telemetry, "outbox_depth": 3})
    feed(fleet, "L-1/events", locker.event("board_online", None, board=2))
    assert tile(fleet, "L-1")["alarms"] == []


def test_a_resent_event_is_shown_once() -> None:
    fleet = Fleet()
    locker = simulated_locker("L-1")
    event = locker.event("door_forced", "C01")
    feed(fleet, "L-1/events", event)
    feed(fleet, "L-1/events", event)
    assert [e["id"] for e in fleet.snapshot()["events"]] == [event["id"]]


def test_offline_is_dated_when_the_last_will_arrives_not_by_its_stale_since() -> None:
    fleet = Fleet()
    locker = simulated_locker("L-1")
    load(fleet, locker)
    will = {**locker.status, "online": False, "since": "2020-01-01T00:00:00+00:00"}
    feed(fleet, "L-1/status", will)
    summary = tile(fleet, "L-1")
    assert summary["online"] is False
    assert summary["since"] > "2025"


def test_junk_is_counted_and_ignored() -> None:
    fleet = Fleet()
    feed(fleet, "L-1/status", b"not json")
    feed(fleet, "L-1/status", b"[1, 2]")
    feed(fleet, "L-1/elsewhere", {"x": 1})
    fleet.ingest("other/L-1/status", b"{}", retained=False)
    fleet.ingest("lockers/_ctl/c/replies", b"{}", retained=False)
    assert fleet.ignored == 5
    assert fleet.ids() == []


def test_a_cleared_retained_compartment_disappears() -> None:
    fleet = Fleet()
    locker = simulated_locker("L-1", compartments=4)
    load(fleet, locker)
    fleet.ingest("lockers/L-1/compartments/C04", b"", retained=True)
    assert tile(fleet, "L-1")["compartments"] == 3


def test_malformed_fields_from_a_locker_do_not_break_its_tile_or_the_feed() -> None:
    fleet = Fleet()
    feed(fleet, "bad-1/status", {"online": True, "free_by_size": {"M": "x", "S": 2}},
         retained=True)
    feed(fleet, "bad-2/status", {"online": True, "free_by_size": ["S", 1]}, retained=True)
    feed(fleet, "bad-2/compartments/A01",
         {"state": 7, "door": None, "size": "S", "assignment_ids": "p-1"}, retained=True)
    assert tile(fleet, "bad-1")["free_by_size"] == {"S": 2}
    assert tile(fleet, "bad-2")["free_by_size"] == {"S": 0}
    cell = fleet.locker("bad-2")["compartments"][0]  # type: ignore[index]
    assert cell["state"] == "7" and cell["assignment_ids"] == []
    assert fleet.snapshot()["lockers"] and fleet.drain() is not None


def test_a_flood_of_huge_and_odd_messages_keeps_the_dashboard_bounded() -> None:
    # issue 15: 100 events of 1 MB raised the dashboard from 62 to 197 MB
    fleet = Fleet()
    huge = json.dumps({"id": "e", "type": "x", "data": {"blob": "A" * 1_000_000}}).encode()
    for n in range(100):
        feed(fleet, "L1/events", huge.replace(b'"e"', f'"e{n}"'.encode()))
    assert fleet.ignored == 100 and fleet.snapshot()["events"] == []
    # long texts that fit the size cap are cut; nesting is bounded
    feed(fleet, "L1/events", {"id": "e-long", "type": "door_forced", "at": "2026-12-07",
                              "data": {"note": "B" * 10_000, "deep": [[[[[["x"]]]]]]}})
    [event] = fleet.snapshot()["events"]
    assert len(event["data"]["note"]) == 200
    assert len(json.dumps(event)) < 2_000
    # a compartment message without the fields the page reads still gives it strings
    feed(fleet, "L1/compartments/C01", {"size": 3})
    batch = fleet.drain()
    assert batch is not None
    [compartment] = batch["compartments"]
    assert (compartment["state"], compartment["door"], compartment["size"]) == (
        "unknown", "unknown", "3")
    # events no page drains do not pile up without end
    for n in range(3_000):
        feed(fleet, "L1/events", {"id": f"x{n}", "type": "ping"})
    drained = fleet.drain()
    assert drained is not None and len(drained["events"]) <= 2_000


def test_a_place_on_the_front_is_kept_only_if_it_is_one() -> None:
    fleet = Fleet()
    locker = simulated_locker("L-1", front=front_of(REPO / "config" / "example-rs485.toml"))
    load(fleet, locker)
    found = fleet.locker("L-1")
    assert found is not None
    places = {c["id"]: (c["row"], c["column"]) for c in found["compartments"]}
    assert places["A01"] == (1, 1) and places["D06"] == (6, 4) and len(places) == 24
    for bad in (0, -1, 65, True, "2", 2.5, None, [1]):
        feed(fleet, "L-1/compartments/A01", {**locker.compartments["A01"], "row": bad})
        found = fleet.locker("L-1")
        assert found is not None
        cell = next(c for c in found["compartments"] if c["id"] == "A01")
        assert "row" not in cell and cell["column"] == 1, bad


def test_lockers_and_compartments_come_in_natural_order() -> None:
    fleet = Fleet()
    for locker_id in ("L-10", "L-9", "L-100"):
        load(fleet, simulated_locker(locker_id, compartments=11, ids="C{n}"))
    assert fleet.ids() == ["L-9", "L-10", "L-100"]
    assert [s["id"] for s in fleet.snapshot()["lockers"]] == ["L-9", "L-10", "L-100"]
    found = fleet.locker("L-9")
    assert found is not None
    assert [c["id"] for c in found["compartments"]] == [f"C{n}" for n in range(1, 12)]
