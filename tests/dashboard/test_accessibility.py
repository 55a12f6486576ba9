"""axe-core over every state of the dashboard: no serious or critical violation.

axe-core (the copy ``axe-playwright-python`` ships, nothing downloaded) runs every rule it has
on by default, plus ``color-contrast-enhanced``: WCAG's AAA contrast, 7:1 for text (4.5:1 when
large), which a depot's glare and a tired night shift deserve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from tests.conftest import REPO
from tests.dashboard.browser import sign_in, signed_in
from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.fleet_sim import (
    FleetPublisher,
    SimulatedLocker,
    front_of,
    simulated_locker,
)
from tests.support.mosquitto import MosquittoBroker

OPTIONS = {"resultTypes": ["violations"],
           "rules": {"color-contrast-enhanced": {"enabled": True}}}
BLOCKING = frozenset({"serious", "critical"})


def check(page: Page, state: str) -> None:
    """Fail with axe's own report if the page, as it is now, has a serious violation."""
    results = Axe().run(page, options=OPTIONS)
    ran = {rule["id"] for kind in ("violations", "passes", "incomplete")
           for rule in results.response[kind]}
    assert "color-contrast-enhanced" in ran, "axe did not check the 7:1 contrast"
    blocking: list[dict[str, Any]] = [v for v in results.response["violations"]
                                      if v["impact"] in BLOCKING]
    report = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n" + "\n".join(
            f"    {node['target']}: {node['failureSummary']}" for node in v["nodes"][:5])
        for v in blocking)
    assert not blocking, f"{state}: axe found serious or critical violations:\n{report}"


@dataclass
class Scene:
    page: Page
    publisher: FleetPublisher
    lockers: list[SimulatedLocker]


@pytest.fixture
def scene(browser: Browser, mosquitto: MosquittoBroker, make_dashboard: DashboardFactory,
          serve: Callable[[FastAPI], str]) -> Iterator[Scene]:
    """A small fleet in every state a tile can be in, and the page before sign-in."""
    lockers = [
        simulated_locker("front-4x6", front=front_of(REPO / "config" / "example-rs485.toml"),
                         reserved=3, out_of_service=2),
        simulated_locker("depot-2", compartments=12, ids="C{n}", reserved=1),
        simulated_locker("depot-3", compartments=8, online=False),
    ]
    lockers[1].status["in_service"] = False
    with FleetPublisher(mosquitto.host, mosquitto.port) as publisher:
        publisher.retain_state(lockers)
        dashboard = make_dashboard(timeout=0.5)
        for locker in lockers:
            dashboard.wait_for_locker(locker.locker_id, len(locker.compartments),
                                      online=locker.status["online"])
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        try:
            tab = context.new_page()
            tab.goto(serve(dashboard.app))
            yield Scene(tab, publisher, lockers)
        finally:
            context.close()


@pytest.mark.slow  # about 7 s: axe-core runs over eight states of the page
def test_every_state_of_the_dashboard_passes_axe(scene: Scene, token: str) -> None:
    tab, publisher = scene.page, scene.publisher
    front, depot_2, _ = scene.lockers

    expect(tab.locator("#sign-in")).to_be_visible()
    check(tab, "sign-in")
    sign_in(tab, "ops-anna.not-the-token")
    expect(tab.locator("#sign-in-error")).to_contain_text("Wrong token")
    check(tab, "sign-in refused")

    signed_in(tab, token, "ops-anna")
    expect(tab.locator(".tile")).to_have_count(3)
    check(tab, "fleet view")

    # alarms: chips on the tiles, the feed, the locker's list of alarms
    publisher.event(front, "door_forced", "A03")
    publisher.event(front, "door_left_open", "B02", open_s=130)
    publisher.event(depot_2, "outbox_high", depth=1200, max_events=200000)
    publisher.compartment(front, "B02", door="open")
    expect(tab.locator(".chip")).to_have_count(3)
    check(tab, "fleet view with alarms")

    # a locker's grid: its front, a door open, a compartment selected, a reply
    tab.click('.tile[data-locker="front-4x6"]')
    expect(tab.locator("#grid .cell")).to_have_count(24)
    expect(tab.locator("#detail-alarm-count")).to_have_text("2 alarms")
    tab.click('.cell[data-compartment="B02"]')
    expect(tab.locator("#compartment-form")).to_be_visible()
    check(tab, "a locker's grid with alarms")
    tab.click("#act-open")
    expect(tab.locator("#reply.refused")).to_contain_text("Give a reason")
    check(tab, "a refused action")
    tab.click("#act-sync")
    expect(tab.locator("#reply.refused")).to_contain_text("No answer from front-4x6")
    check(tab, "a locker that does not answer")

    # a locker that places no door, out of service
    tab.click("#detail-close")
    tab.click('.tile[data-locker="depot-2"]')
    expect(tab.locator("#grid .cell")).to_have_count(12)
    check(tab, "a locker without a front")
