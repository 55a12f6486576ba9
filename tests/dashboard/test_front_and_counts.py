"""In headless Chromium: a locker drawn as its front, and every count in the right number.

A few simulated lockers (the real retained payloads) on a Mosquitto, no agent: the 4 x 6
front is config/example-rs485.toml's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from tests.conftest import REPO
from tests.dashboard.browser import screenshot, signed_in
from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.fleet_sim import (
    FleetPublisher,
    PlacedCompartment,
    SimulatedLocker,
    front_of,
    simulated_locker,
)
from tests.support.mosquitto import MosquittoBroker

FRONT = front_of(REPO / "config" / "example-rs485.toml")
GAPPY = [PlacedCompartment("G1", "S", 1, 1), PlacedCompartment("G3", "S", 1, 3),
         PlacedCompartment("G5", "M", 2, 2), PlacedCompartment("G7", "L", 3, 1),
         PlacedCompartment("loose", "S")]
"""Three columns with holes (a screen at row 1 column 2, say), and one door with no place."""


@pytest.fixture
def publisher(mosquitto: MosquittoBroker) -> Iterator[FleetPublisher]:
    with FleetPublisher(mosquitto.host, mosquitto.port) as publishing:
        yield publishing


@pytest.fixture
def open_dashboard(browser: Browser, make_dashboard: DashboardFactory,
                   serve: Callable[[FastAPI], str], token: str
                   ) -> Iterator[Callable[[list[SimulatedLocker]], Page]]:
    """Sign in to a dashboard that already holds these lockers' retained state."""
    contexts = []

    def start(lockers: list[SimulatedLocker]) -> Page:
        dashboard = make_dashboard()
        for locker in lockers:
            dashboard.wait_for_locker(locker.locker_id, len(locker.compartments))
        url = serve(dashboard.app)
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        signed_in(page, token, "ops-anna")
        return page

    yield start
    for context in contexts:
        context.close()


def boxes(page: Page) -> dict[str, dict[str, Any]]:
    """Every cell of the open locker: where the browser drew it, and its grid placement."""
    result: dict[str, dict[str, Any]] = page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('#grid .cell')].map((cell) => {
            const box = cell.getBoundingClientRect();
            const style = getComputedStyle(cell);
            return [cell.dataset.compartment, {x: box.x, y: box.y, width: box.width,
                    row: style.gridRowStart, column: style.gridColumnStart}];
        }))""")
    return result


def cell_order(page: Page) -> list[str]:
    order: list[str] = page.eval_on_selector_all(
        "#grid .cell", "cells => cells.map(c => c.dataset.compartment)")
    return order


def test_a_lockers_grid_is_drawn_as_its_front(
    publisher: FleetPublisher, open_dashboard: Callable[[list[SimulatedLocker]], Page]
) -> None:
    lockers = [simulated_locker("front-4x6", front=FRONT, reserved=2),
               simulated_locker("gappy", front=GAPPY, reserved=0, out_of_service=0),
               simulated_locker("plain", compartments=12, ids="C{n}", reserved=0)]
    publisher.retain_state(lockers)
    page = open_dashboard(lockers)

    page.click('.tile[data-locker="front-4x6"]')
    expect(page.locator("#grid .cell")).to_have_count(24)
    expect(page.locator("#grid")).to_have_class("grid front")
    drawn = boxes(page)
    for place in FRONT:
        cell = drawn[place.id]
        assert (cell["row"], cell["column"]) == (str(place.row), str(place.column)), place
    # and on screen: one x per column, left to right; one y per row, top to bottom
    xs = {c: {round(drawn[p.id]["x"]) for p in FRONT if p.column == c} for c in range(1, 5)}
    ys = {r: {round(drawn[p.id]["y"]) for p in FRONT if p.row == r} for r in range(1, 7)}
    assert all(len(found) == 1 for found in [*xs.values(), *ys.values()]), (xs, ys)
    columns = [min(drawn[p.id]["x"] for p in FRONT if p.column == c) for c in range(1, 5)]
    rows = [min(drawn[p.id]["y"] for p in FRONT if p.row == r) for r in range(1, 7)]
    assert columns == sorted(columns) and len(set(columns)) == 4
    assert rows == sorted(rows) and len(set(rows)) == 6
    # keyboard and screen reader go through the front as it reads: row by row
    order = cell_order(page)
    assert order == [p.id for p in sorted(FRONT, key=lambda p: (p.row, p.column))]
    expect(page.locator("#grid")).to_have_attribute(
        "aria-label", "Compartments, as on the front: 6 rows, 4 columns")
    screenshot(page, "locker-front")

    # a hole in the front stays a hole; a door with no place waits below the front
    page.click("#detail-close")
    page.click('.tile[data-locker="gappy"]')
    expect(page.locator("#grid .cell")).to_have_count(5)
    drawn = boxes(page)
    pitch = drawn["G5"]["x"] - drawn["G1"]["x"]
    assert pitch > 50
    assert abs(drawn["G3"]["x"] - drawn["G1"]["x"] - 2 * pitch) < 2  # column 3, not 2
    assert abs(drawn["G7"]["x"] - drawn["G1"]["x"]) < 2 and drawn["G7"]["y"] > drawn["G5"]["y"]
    empty = page.evaluate(f"""() => {{
        const g1 = document.querySelector('[data-compartment=G1]').getBoundingClientRect();
        const at = document.elementFromPoint(g1.x + {pitch} + g1.width / 2, g1.y + g1.height / 2);
        return at.closest('.cell') === null;
    }}""")
    assert empty, "something was drawn at row 1, column 2, where the locker has no door"
    loose = page.locator('.cell[data-compartment="loose"]')
    expect(loose).to_have_class("cell free unplaced")
    assert drawn["loose"]["y"] > drawn["G7"]["y"]

    # a locker that places no door: a flowing grid in natural order, C2 before C10
    page.click("#detail-close")
    page.click('.tile[data-locker="plain"]')
    expect(page.locator("#grid .cell")).to_have_count(12)
    expect(page.locator("#grid")).to_have_class("grid")
    order = cell_order(page)
    assert order == [f"C{n}" for n in range(1, 13)]


def test_every_count_is_in_the_right_number(
    publisher: FleetPublisher, open_dashboard: Callable[[list[SimulatedLocker]], Page]
) -> None:
    one = simulated_locker("depot-1", compartments=4, reserved=0, out_of_service=0)
    publisher.retain_state([one])
    page = open_dashboard([one])
    counts = page.locator("#counts")
    expect(counts).to_have_text("1 locker · 1 online · 0 offline · no alarms")

    two = simulated_locker("depot-2", compartments=4, reserved=0, out_of_service=0)
    publisher.retain_state([two])
    expect(counts).to_have_text("2 lockers · 2 online · 0 offline · no alarms")

    publisher.event(one, "door_forced", "C01")
    expect(counts).to_have_text("2 lockers · 2 online · 0 offline · 1 alarm on 1 locker")
    publisher.event(one, "door_left_open", "C02", open_s=130)
    expect(counts).to_have_text("2 lockers · 2 online · 0 offline · 2 alarms on 1 locker")
    publisher.event(two, "door_forced", "C03")
    expect(counts).to_have_text("2 lockers · 2 online · 0 offline · 3 alarms on 2 lockers")

    tile = page.locator('.tile[data-locker="depot-1"] .occ')
    publisher.compartment(one, "C01", door="open")
    expect(tile).to_have_text("0/4 occupied · 1 door open")
    publisher.compartment(one, "C02", door="open")
    expect(tile).to_have_text("0/4 occupied · 2 doors open")

    page.click('.tile[data-locker="depot-1"]')
    expect(page.locator("#detail-alarm-count")).to_have_text("2 alarms")
    page.click("#detail-close")
    page.click('.tile[data-locker="depot-2"]')
    expect(page.locator("#detail-alarm-count")).to_have_text("1 alarm")
