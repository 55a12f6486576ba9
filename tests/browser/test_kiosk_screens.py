"""Every screen of the kiosk, in every language, at a phone's, a portrait kiosk's and a
landscape kiosk's size: it fits, it is all in the language chosen (a message shown before the
switch too), it reads (no character without a glyph), axe finds nothing serious and every
text has 7:1 contrast.

One page per size walks the whole flow against the live agent: start, courier sign-in, the
courier's screen, a courier's door open, a problem, a customer's door open ("please close"),
done, a wrong code, and the countdown after too many.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.api.live_agent import LiveAgent
from tests.api.test_courier_api import COURIER_CODE, grant_and_reserve
from tests.browser.conftest import kiosk_page, screenshot
from tests.browser.kiosk import (
    LANGUAGES,
    SIZES,
    Size,
    axe_problems,
    font_problems,
    font_session,
    layout_problems,
    untranslated,
)

CODE = "48291377"
WRONG_CODES = ["11112222", "33334444", "55556666", "77778888"]  # 3 free tries, then a wait
DOC_SHOTS = {
    ("start", "en"): ("phone", "portrait", "landscape"),
    ("opening", "en"): ("phone", "portrait", "landscape"),
    ("lockout", "en"): ("phone", "portrait", "landscape"),
    ("start", "zh-Hant"): ("portrait", "landscape"),
    ("error", "en"): ("landscape",),
    ("done", "en"): ("landscape",),
    ("problem", "en"): ("landscape",),
    ("courier", "en"): ("landscape",),
    ("courier-open", "en"): ("landscape",),
}
"""The screenshots docs/kiosk.md shows (``KIOSK_SCREENSHOTS=docs/img``)."""


@dataclass(frozen=True)
class Stop:
    screen: str
    must_see: list[str]
    """What must be in the first viewport, unscrolled: the screen's point and its action."""


def enter(page: Page, code: str) -> None:
    page.keyboard.type(code)  # digits typed anywhere on the start screen go into the code
    page.keyboard.press("Enter")
    expect(page.locator("#code")).to_have_value("")  # answered


def tour(page: Page, live: LiveAgent) -> Iterator[Stop]:
    compartment = live.deposit("p-1", CODE)
    grant_and_reserve(live, ("p-2", "S"), ("p-3", "M"))

    yield Stop("start", ["#code", "#keypad", "#submit"])

    page.locator("#to-courier").click()
    expect(page.locator("#to-customer")).to_be_visible()
    yield Stop("courier-sign-in", ["#code", "#submit"])

    enter(page, COURIER_CODE)
    expect(page.locator("#screen-courier")).to_be_visible()
    yield Stop("courier", ["#courier-heading", "#parcel", "#deposit"])

    page.locator("#parcel").fill("PKG-p-2")
    page.locator("#parcel").press("Enter")
    door = page.locator("#courier-doors li").first
    expect(door).to_have_attribute("data-state", "open")
    yield Stop("courier-open", ["#courier-message", "#courier-doors", "#doesnt-fit"])

    live.close_door(door.get_attribute("data-compartment") or "")
    expect(page.locator("#courier-open")).to_be_hidden()
    # the session ends behind the page's back: its next step finds it gone
    session = page.evaluate("state.session.session_id")
    httpx.post(f"{live.url}/api/kiosk/courier/sessions/{session}/sign-out").raise_for_status()
    page.locator("#parcel").fill("PKG-p-3")
    page.locator("#parcel").press("Enter")
    expect(page.locator("#screen-problem")).to_be_visible()
    yield Stop("problem", ["#problem-heading", "#problem-ok"])

    page.locator("#problem-ok").click()
    enter(page, CODE)
    expect(page.locator("#opening-doors li")).to_have_attribute("data-state", "open")
    yield Stop("opening", ["#opening-heading", "#opening-doors"])

    live.close_door(compartment)
    expect(page.locator("#screen-done")).to_be_visible()  # for 6 s after the last touch
    yield Stop("done", ["#done-heading", "#done-ok"])

    page.locator("#done-ok").click()
    enter(page, WRONG_CODES[0])
    expect(page.locator("#entry-error")).to_be_visible()
    yield Stop("error", ["#entry-error", "#keypad", "#submit"])

    for code in WRONG_CODES[1:]:
        enter(page, code)
    expect(page.locator("#entry-wait")).to_be_visible()  # the default first wait, 30 s
    yield Stop("lockout", ["#entry-error", "#entry-wait", "#keypad", "#submit"])


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_every_screen_in_every_language_fits_reads_and_passes_axe(
    browser: Browser, live: LiveAgent, size: Size
) -> None:
    problems: dict[str, list[str]] = {}
    stops = []
    with kiosk_page(browser, live, size.viewport) as page:
        fonts = font_session(page)
        for stop in tour(page, live):
            stops.append(stop.screen)
            for lang in LANGUAGES:
                page.locator(f'#languages button[data-lang="{lang}"]').click()
                expect(page.locator("html")).to_have_attribute("lang", lang)
                found = [*layout_problems(page, stop.must_see), *untranslated(page, lang),
                         *font_problems(page, fonts), *axe_problems(page)]
                if found:
                    problems[f"{stop.screen} in {lang}"] = found
                if size.name in DOC_SHOTS.get((stop.screen, lang), ()):
                    suffix = "" if lang == "en" else f"-{lang}"
                    screenshot(page, f"{stop.screen}{suffix}-{size}")
            page.locator('#languages button[data-lang="en"]').click()
    assert len(stops) == 9, stops
    assert not problems, "\n".join(
        f"{where}:\n  " + "\n  ".join(found) for where, found in problems.items())
