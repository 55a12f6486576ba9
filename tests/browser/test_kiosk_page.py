"""The kiosk page end to end in a real browser, against the real agent and its API."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from locker_agent.domain.model import AssignmentStatus, DoorState
from tests.api.live_agent import LiveAgent
from tests.api.test_courier_api import COURIER_CODE, grant_and_reserve

CODE = "48291377"


def test_a_pin_typed_on_the_keypad_opens_the_door_and_the_page_follows_it_closed(
    page: Page, live: LiveAgent
) -> None:
    compartment = live.deposit("p-1", CODE)
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

    live.close_door(compartment)
    expect(page.locator("#done-heading")).to_have_text("Pickup complete. Thank you!")
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
    page.keyboard.type("99990000")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("取件碼無效，請檢查後再試一次。")  # noqa: RUF001
    page.get_by_role("button", name="EN", exact=True).click()
    expect(page.locator("#entry-heading")).to_have_text("Type your pickup code")
    # a message already on screen is said again in the new language
    expect(page.get_by_role("alert")).to_have_text(
        "That code is not valid. Check it and try again.")
    page.get_by_role("button", name="RU", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        "Неверный код. Проверьте его и попробуйте снова.")  # noqa: RUF001
    expect(page.get_by_role("group")).to_have_attribute("aria-label", "Клавиатура")


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

    page.locator("#parcel").fill("PKG-p-1")
    page.keyboard.press("Enter")
    panel = page.locator("#courier-open")
    expect(panel).to_be_visible()
    compartment = page.locator("#courier-doors li").first.get_attribute("data-compartment")
    assert compartment is not None
    expect(page.locator("#courier-message")).to_contain_text("put the parcel in and close")
    expect(page.locator(f"#courier-doors li[data-compartment={compartment}]")).to_have_attribute(
        "data-state", "open")
    live.close_door(compartment)
    expect(page.locator("#courier-message")).to_have_text("Door closed. Scan the next parcel.")
    expect(panel).to_be_hidden()
    expect(page.locator("#to-deposit li")).to_have_count(1)
    live.wait_for(lambda: live.agent.service.locker.assignments["p-1"].status
                  is AssignmentStatus.DEPOSITED)
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#entry-heading")).to_have_text("Type your pickup code")


WRONG_CODES = ["11112222", "33334444", "55556666", "77778888"]  # 3 free tries, then a wait
SHORT_WAITS = pytest.param({"lockout_first_delay_s": 3}, id="3-s-wait")


@pytest.mark.slow
@pytest.mark.parametrize("live", [SHORT_WAITS], indirect=True)
def test_the_wrong_code_that_starts_a_wait_counts_it_down_and_the_keypad_comes_back(
    page: Page, live: LiveAgent
) -> None:
    live.deposit("p-1", CODE)
    alert, timer, code = page.get_by_role("alert"), page.get_by_role("timer"), page.locator("#code")
    for wrong in WRONG_CODES[:3]:  # the free tries: an error, and the keypad stays
        page.keyboard.type(wrong)
        page.keyboard.press("Enter")
        expect(alert).to_have_text("That code is not valid. Check it and try again.")
        expect(code).to_be_enabled()
    page.keyboard.type(WRONG_CODES[3])
    page.keyboard.press("Enter")  # the API answers with retry_after_s: 3

    expect(alert).to_have_text(
        "That code is not valid. Check it and try again. "
        "Too many wrong codes. The keypad is locked until the time runs out.")
    expect(timer).to_have_text("Seconds left: 3")
    expect(timer).to_be_focused()
    expect(code).to_be_disabled()
    expect(page.locator("#submit")).to_be_disabled()
    for key in page.locator("#keypad button").all():
        expect(key).to_be_disabled()
    page.keyboard.type(CODE)  # the right code, too early: nothing is typed, nothing is sent
    expect(code).to_have_value("")
    page.get_by_role("button", name="中文", exact=True).click()  # said again, still counting
    expect(alert).to_have_text(re.compile(r"^取件碼無效.*錯誤次數過多"))
    expect(timer).to_have_text(re.compile(r"^剩餘秒數：[123]$"))  # noqa: RUF001
    page.get_by_role("button", name="EN", exact=True).click()
    expect(timer).to_have_text("Seconds left: 1", timeout=3000)

    expect(timer).to_be_hidden(timeout=3000)  # the wait is over: the keypad is back
    expect(alert).to_have_text("You can type your code again.")
    expect(code).to_be_enabled()
    expect(code).to_be_focused()
    page.keyboard.type(CODE)
    page.keyboard.press("Enter")
    expect(page.locator("#opening-heading")).to_contain_text("Compartment 1 is open")


@pytest.mark.parametrize("live", [SHORT_WAITS], indirect=True)
def test_a_page_that_missed_the_start_of_a_wait_is_told_how_long_is_left(
    page: Page, live: LiveAgent
) -> None:
    live.deposit("p-1", CODE)
    for wrong in WRONG_CODES:
        page.keyboard.type(wrong)
        page.keyboard.press("Enter")
        expect(page.locator("#code")).to_have_value("")
    page.reload()  # a new page knows nothing of the wait; the API tells it
    page.wait_for_selector("body[data-ready=true]")
    page.keyboard.type(CODE)
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(
        "Too many wrong codes. The keypad is locked until the time runs out.")
    expect(page.get_by_role("timer")).to_have_text(re.compile(r"^Seconds left: [123]$"))
    expect(page.locator("#code")).to_be_disabled()


def test_keyboard_alone_types_a_code_tabs_to_open_and_hears_the_door(
    page: Page, live: LiveAgent
) -> None:
    compartment = live.deposit("p-1", CODE)
    expect(page.locator("#code")).to_be_focused()
    page.keyboard.type(CODE)
    for _ in range(20):  # past the keypad to "Open"
        if page.evaluate("document.activeElement.id") == "submit":
            break
        page.keyboard.press("Tab")
    expect(page.locator("#submit")).to_be_focused()
    page.keyboard.press("Enter")

    news = page.locator("#door-news")  # a polite live region: what a screen reader says
    expect(news).to_have_attribute("aria-live", "polite")
    expect(news).to_have_text("Compartment 1: Open")
    live.close_door(compartment)
    expect(news).to_have_text("Compartment 1: Closed")
    expect(page.locator("#done-heading")).to_have_text("Pickup complete. Thank you!")
    expect(page.locator("#done-ok")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#code")).to_be_focused()
