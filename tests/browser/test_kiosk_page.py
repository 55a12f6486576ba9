"""The kiosk page end to end in a real browser, against the real agent and its API."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from locker_agent.domain.model import AssignmentStatus, DoorState
from tests.api.live_agent import LiveAgent
from tests.api.test_courier_api import COURIER_CODE, grant_and_reserve
from tests.browser.conftest import screenshot

CODE = "48291377"


def test_a_pin_typed_on_the_keypad_opens_the_door_and_the_page_follows_it_closed(
    page: Page, live: LiveAgent
) -> None:
    compartment = live.deposit("p-1", CODE)
    screenshot(page, "start")
    for digit in CODE:
        page.get_by_role("button", name=digit, exact=True).click()
    expect(page.locator("#code")).to_have_value(CODE)
    page.get_by_role("button", name="Open", exact=True).click()

    heading = page.locator("#opening-heading")
    expect(heading).to_have_text(
        "Compartment 1 is open — please close the door when you are done."
    )
    door = page.locator(f"#opening-doors li[data-compartment={compartment}]")
    expect(door.locator(".where")).to_have_text("row 1, column 1")
    expect(door).to_have_attribute("data-state", "open")  # the simulated door swung open
    assert live.door(compartment) is DoorState.OPEN
    screenshot(page, "open")

    live.close_door(compartment)
    expect(page.locator("#done-heading")).to_have_text("Pickup complete. Thank you!")
    screenshot(page, "done")
    live.wait_for(lambda: "p-1" not in live.agent.service.locker.assignments)


def test_a_wrong_pin_typed_on_a_keyboard_shows_what_to_do_and_opens_nothing(
    page: Page, live: LiveAgent
) -> None:
    live.deposit("p-1", CODE)
    pulses = live.call(lambda: len(live.agent.simulator.pulses) if live.agent.simulator else 0)
    page.keyboard.type("11112222")  # digits from a physical keyboard reach the code field
    page.keyboard.press("Enter")
    error = page.get_by_role("alert")
    expect(error).to_have_text("That code is not valid. Check it and try again.")
    expect(page.locator("#screen-entry")).to_be_visible()
    screenshot(page, "wrong-code")
    assert live.call(
        lambda: len(live.agent.simulator.pulses) if live.agent.simulator else 0
    ) == pulses
    page.keyboard.press("Escape")
    page.keyboard.type("12")
    expect(page.locator("#code")).to_have_value("12")


def test_the_language_switch_changes_every_text_and_the_timeout_resets_it(
    page: Page, live: LiveAgent
) -> None:
    page.get_by_role("button", name="IT", exact=True).click()
    expect(page.locator("#entry-heading")).to_have_text("Digita il codice di ritiro")
    expect(page.locator("html")).to_have_attribute("lang", "it")
    page.get_by_role("button", name="RU", exact=True).click()
    expect(page.locator("#entry-heading")).to_have_text("Введите код получения")
    page.get_by_role("button", name="中文", exact=True).click()
    expect(page.locator("#entry-heading")).to_have_text("請輸入取件碼")
    screenshot(page, "language")
    page.keyboard.type("99990000")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("取件碼無效，請檢查後再試一次。")  # noqa: RUF001
    page.get_by_role("button", name="EN", exact=True).click()
    expect(page.locator("#entry-heading")).to_have_text("Type your pickup code")


def test_a_courier_signs_in_and_drops_a_parcel_off_by_its_barcode(
    page: Page, live: LiveAgent
) -> None:
    grant_and_reserve(live, ("p-1", "S"), ("p-2", "M"))
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.get_by_role("button", name="I am a courier").click()
    expect(page.locator("#entry-heading")).to_have_text("Courier sign-in")
    page.keyboard.type(COURIER_CODE)
    page.keyboard.press("Enter")
    expect(page.locator("#courier-heading")).to_have_text("Courier courier-7")
    expect(page.locator("#to-deposit li")).to_have_count(2)
    screenshot(page, "courier")

    page.locator("#parcel").fill("PKG-p-1")
    page.keyboard.press("Enter")
    panel = page.locator("#courier-open")
    expect(panel).to_be_visible()
    compartment = page.locator("#courier-doors li").first.get_attribute("data-compartment")
    assert compartment is not None
    expect(page.locator("#courier-message")).to_contain_text("put the parcel in and close")
    expect(page.locator(f"#courier-doors li[data-compartment={compartment}]")).to_have_attribute(
        "data-state", "open")
    screenshot(page, "courier-open")
    live.close_door(compartment)
    expect(page.locator("#courier-message")).to_have_text("Door closed. Scan the next parcel.")
    expect(panel).to_be_hidden()
    expect(page.locator("#to-deposit li")).to_have_count(1)
    live.wait_for(lambda: live.agent.service.locker.assignments["p-1"].status
                  is AssignmentStatus.DEPOSITED)
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#entry-heading")).to_have_text("Type your pickup code")
