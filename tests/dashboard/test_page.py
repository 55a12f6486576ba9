"""The dashboard in headless Chromium: 50 simulated lockers and one real agent on Mosquitto."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from locker_agent.ctl.client import ConnectionOptions, FleetClient
from locker_agent.domain.model import DoorState
from tests.cloud.harness import AgentThread
from tests.dashboard.browser import screenshot, sign_in, signed_in
from tests.dashboard.conftest import REAL_LOCKER, DashboardFactory, OperatorsFile
from tests.dashboard.fleet_sim import FleetPublisher, SimulatedLocker, simulated_locker
from tests.support.mosquitto import MosquittoBroker

SIMULATED = 50


@pytest.fixture
def fleet(mosquitto: MosquittoBroker) -> Iterator[tuple[FleetPublisher, list[SimulatedLocker]]]:
    lockers = [simulated_locker(f"sim-{n:03d}", reserved=n % 5, out_of_service=n % 3)
               for n in range(SIMULATED)]
    with FleetPublisher(mosquitto.host, mosquitto.port) as publisher:
        publisher.retain_state(lockers)
        yield publisher, lockers


@pytest.fixture
def dashboard_url(fleet: tuple[FleetPublisher, list[SimulatedLocker]], real_agent: AgentThread,
                  make_dashboard: DashboardFactory, operator_key: Ed25519PrivateKey,
                  serve: Callable[[FastAPI], str]) -> str:
    dashboard = make_dashboard(sign_with=operator_key)
    dashboard.wait_for_locker(REAL_LOCKER, 6)
    dashboard.wait_for_locker(fleet[1][-1].locker_id, 24)
    return serve(dashboard.app)


@pytest.fixture
def page(browser: Browser, dashboard_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    tab = context.new_page()
    outside: list[str] = []
    tab.on("request", lambda r: None if r.url.startswith(dashboard_url) else outside.append(r.url))
    tab.goto(dashboard_url)
    try:
        yield tab
    finally:
        context.close()
    assert outside == [], f"the page fetched from outside the dashboard: {outside}"


def door(agent: AgentThread, compartment_id: str) -> DoorState:
    assert agent.agent is not None and agent.agent.simulator is not None
    simulator = agent.agent.simulator
    return agent.call(lambda: simulator.read()[compartment_id])


def test_the_fleet_shows_live_and_an_alarm_reaches_its_tile_within_a_second(
    page: Page, fleet: tuple[FleetPublisher, list[SimulatedLocker]], token: str
) -> None:
    expect(page.locator("#sign-in")).to_be_visible()
    screenshot(page, "sign-in")
    sign_in(page, "ops-anna.wrong-wrong-wrong")
    expect(page.locator("#sign-in-error")).to_contain_text("Wrong token")
    sign_in(page, token)
    page.wait_for_selector("body[data-rendered]")
    expect(page.locator(".tile")).to_have_count(SIMULATED + 1)
    expect(page.locator(f'.tile[data-locker="{REAL_LOCKER}"]')).to_contain_text("online")
    expect(page.locator('.tile[data-locker="sim-004"]')).to_contain_text("0/24 occupied")
    expect(page.locator("#counts")).to_contain_text(f"{SIMULATED + 1} lockers")

    # no redraw: the other tiles stay the very same elements while one changes
    page.evaluate("document.querySelector('.tile[data-locker=\"sim-001\"]').dataset.mark = 'kept'")
    publisher, lockers = fleet
    target = lockers[17]
    started = time.monotonic()
    publisher.event(target, "door_forced", "C05")
    chip = page.locator(f'.tile[data-locker="{target.locker_id}"] .chip[data-kind=door_forced]')
    chip.wait_for(timeout=1000)
    took = time.monotonic() - started
    assert took < 1.0, f"the alarm took {took:.2f} s to reach the tile"
    assert page.evaluate(
        "document.querySelector('.tile[data-locker=\"sim-001\"]').dataset.mark") == "kept"
    expect(page.locator(f'.tile[data-locker="{target.locker_id}"]')).to_have_class(
        "tile has-alarm")
    # the feed has it, and its filters work
    expect(page.locator("#feed li.alarm").first).to_contain_text(
        f"{target.locker_id} door_forced C05")
    page.fill("#feed-locker", "sim-002")
    expect(page.locator("#feed li")).to_have_count(0)
    page.fill("#feed-locker", "")
    page.check("#feed-alarms")
    expect(page.locator("#feed li")).to_have_count(1)
    screenshot(page, "fleet")

    # a locker goes offline (its Last Will): the tile says so
    publisher.publish(f"{lockers[3].locker_id}/status", {**lockers[3].status, "online": False},
                      retain=True, qos=1).wait_for_publish(5)
    expect(page.locator('.tile[data-locker="sim-003"]')).to_contain_text("offline")


def test_open_from_the_page_opens_the_real_door_and_a_refusal_is_shown(
    page: Page, real_agent: AgentThread, token: str
) -> None:
    sign_in(page, token)
    page.click(f'.tile[data-locker="{REAL_LOCKER}"]')
    expect(page.locator("#grid .cell")).to_have_count(6)
    page.click('.cell[data-compartment="A03"]')
    expect(page.locator("#sel-info")).to_contain_text("door closed")
    page.click("#act-open")
    expect(page.locator("#reply")).to_contain_text("Give a reason")
    page.fill("#reason", "customer called: door stuck")
    page.click("#act-open")
    expect(page.locator("#reply.ok")).to_contain_text("did it: open")
    deadline = time.monotonic() + 5
    while door(real_agent, "A03") != DoorState.OPEN:
        assert time.monotonic() < deadline, "the door did not open"
        time.sleep(0.02)
    expect(page.locator('.cell[data-compartment="A03"]')).to_have_attribute("data-door", "open")
    screenshot(page, "locker")

    page.click('.cell[data-compartment="A04"]')
    page.click("#act-open")
    expect(page.locator("#reply.ok")).to_contain_text("did it: open")
    page.click('.cell[data-compartment="A05"]')
    page.click("#act-open")  # the third remote opening within the hour: the locker refuses
    refusal = page.locator("#reply.refused")
    expect(refusal).to_contain_text("remote-open policy")
    expect(refusal).to_contain_text("Nothing was opened")
    assert door(real_agent, "A05") == DoorState.CLOSED
    expect(page.locator("#detail-alarms li[data-kind=remote_open_alarm]")).to_be_visible()
    screenshot(page, "refused")

    # out of service and back, on a compartment
    page.click('.cell[data-compartment="A06"]')
    page.fill("#reason", "wet floor")
    page.click("#act-out")
    expect(page.locator('.cell[data-compartment="A06"]')).to_have_attribute(
        "data-state", "out_of_service")
    page.click("#act-in")
    expect(page.locator('.cell[data-compartment="A06"]')).to_have_attribute("data-state", "free")
    page.click("#act-sync")
    expect(page.locator("#reply.ok")).to_contain_text("did it: sync")


def test_on_a_tablet(browser: Browser, dashboard_url: str, token: str) -> None:
    context = browser.new_context(viewport={"width": 768, "height": 1024}, has_touch=True,
                                  is_mobile=True)
    tab = context.new_page()
    try:
        tab.goto(dashboard_url)
        sign_in(tab, token)
        tab.wait_for_selector("body[data-rendered]")
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 768, f"the page scrolls sideways on a tablet ({width} px)"
        tab.tap('.tile[data-locker="sim-010"]')
        expect(tab.locator("#grid .cell")).to_have_count(24)
        screenshot(tab, "tablet")
    finally:
        context.close()


def test_a_command_from_the_page_carries_the_name_bound_to_the_token(
    browser: Browser, dashboard_url: str, operators_file: OperatorsFile,
    mosquitto: MosquittoBroker, real_agent: AgentThread,
) -> None:
    """ops-ben signs in with his token alone; what reaches the locker names him, not anyone
    the page might claim."""
    published: queue.Queue[dict[str, Any]] = queue.Queue()
    with FleetClient(ConnectionOptions(host=mosquitto.host, port=mosquitto.port)) as watcher:
        watcher.subscribe_all([f"lockers/{REAL_LOCKER}/cmd/+", f"lockers/{REAL_LOCKER}/events"],
                              lambda message: published.put(
                                  {"topic": message.topic, **message.json()}))
        context = browser.new_context()
        tab = context.new_page()
        try:
            tab.goto(dashboard_url)
            signed_in(tab, operators_file.tokens["ops-ben"], "ops-ben")
            tab.click(f'.tile[data-locker="{REAL_LOCKER}"]')
            tab.click('.cell[data-compartment="A02"]')
            tab.fill("#reason", "parcel stuck")
            tab.click("#act-open")
            expect(tab.locator("#reply.ok")).to_contain_text("did it: open")
        finally:
            context.close()
        command = next_matching(published, lambda m: m["topic"].endswith("/cmd/open"))
        assert command["args"] == {"compartment_id": "A02", "reason": "parcel stuck",
                                   "operator": "ops-ben"}
        event = next_matching(published, lambda m: m.get("type") == "unlock_requested")
        assert event["data"]["actor"] == "operator:ops-ben"


def next_matching(messages: queue.Queue[dict[str, Any]],
                  wanted: Callable[[dict[str, Any]], bool], timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = messages.get(timeout=max(0.01, deadline - time.monotonic()))
        if wanted(message):
            return message


def test_signing_out_ends_the_event_stream_of_every_tab_of_that_session(
    browser: Browser, dashboard_url: str, operators_file: OperatorsFile,
    fleet: tuple[FleetPublisher, list[SimulatedLocker]],
) -> None:
    """Two tabs share anna's session, ben has his own. Anna signs out in one tab: the server
    ends the other tab's stream at once (it goes back to the sign-in form by itself), while
    ben's page stays live."""
    anna, ben = browser.new_context(), browser.new_context()
    try:
        # (each tab is brought to the front before use: Chromium throttles a background
        # tab's animation frames, which the page and playwright's clicks wait for)
        first = anna.new_page()
        first.goto(dashboard_url)
        signed_in(first, operators_file.tokens["ops-anna"], "ops-anna")
        second = anna.new_page()
        second.goto(dashboard_url)  # the same session's cookie: no sign-in needed
        expect(second.locator("#operator")).to_have_text("ops-anna")
        expect(second.locator("#link")).to_have_text("live")
        bens = ben.new_page()
        bens.goto(dashboard_url)
        signed_in(bens, operators_file.tokens["ops-ben"], "ops-ben")
        expect(bens.locator("#link")).to_have_text("live")

        first.bring_to_front()
        first.click("#sign-out")
        expect(first.locator("#sign-in")).to_be_visible()
        # no request of the second tab's own asked: the server ended its stream
        expect(second.locator("#sign-in")).to_be_visible(timeout=2000)
        expect(second.locator("#app")).to_be_hidden()

        publisher, lockers = fleet
        publisher.event(lockers[2], "door_forced", "C01")
        expect(bens.locator('.tile[data-locker="sim-002"] .chip[data-kind=door_forced]')
               ).to_be_visible()
    finally:
        anna.close()
        ben.close()
