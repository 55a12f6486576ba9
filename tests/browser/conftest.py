"""Real headless Chromium (Debian's package, never downloaded) driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.api.live_agent import LiveAgent, write_locker

CHROMIUM = os.environ.get("LOCKER_AGENT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS_ENV = "KIOSK_SCREENSHOTS"
"""Set to a directory (e.g. docs/img) to save the main screens as kiosk-*.png."""
BARE_BOARD_FONTS = Path("/usr/share/fonts/truetype/dejavu")
"""The only system fonts of a bare board: whatever else this machine has installed (a CJK
font, say), the browser sees DejaVu alone, so the kiosk must bring every other glyph."""


def bare_board_fontconfig(directory: Path) -> dict[str, str]:
    """The environment that shows Chromium only a bare board's fonts (if this machine has
    them where Debian puts them; else its own fonts)."""
    if not BARE_BOARD_FONTS.is_dir():
        return {}
    config = directory / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        f"  <dir>{BARE_BOARD_FONTS}</dir>\n  <cachedir>{directory / 'cache'}</cachedir>\n"
        "</fontconfig>\n"
    )
    return {"FONTCONFIG_FILE": str(config)}


@pytest.fixture(scope="package")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One Chromium for the browser tests, closed when they are done: Playwright's sync API
    keeps an event loop running in this thread while it is open, and every later test that
    calls asyncio.run() would fail on it."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: bash scripts/ensure-system-packages.sh chromium")
    env = {**os.environ, **bare_board_fontconfig(tmp_path_factory.mktemp("fontconfig"))}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              env=env)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def live(request: pytest.FixtureRequest, tmp_path: Path, clean_env: None) -> Iterator[LiveAgent]:
    """The agent; ``parametrize("live", [{...}], indirect=True)`` passes write_locker options."""
    options = getattr(request, "param", {})
    with LiveAgent(write_locker(tmp_path, **options)) as agent:
        yield agent


@contextmanager
def kiosk_page(browser: Browser, live: LiveAgent, viewport: dict[str, int]) -> Iterator[Page]:
    """The kiosk page in a fresh browser context; fails if it fetched anything off the locker."""
    context = browser.new_context(viewport=viewport)
    kiosk = context.new_page()
    outside: list[str] = []
    kiosk.on("request", lambda r: outside.append(r.url) if not r.url.startswith(live.url) else None)
    kiosk.goto(f"{live.url}/kiosk/")
    kiosk.wait_for_selector("body[data-ready=true]")
    try:
        yield kiosk
    finally:
        context.close()
    assert outside == [], f"the page fetched from outside the locker: {outside}"


@pytest.fixture
def page(browser: Browser, live: LiveAgent) -> Iterator[Page]:
    with kiosk_page(browser, live, {"width": 1024, "height": 768}) as kiosk:
        yield kiosk


def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get(SCREENSHOTS_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"kiosk-{name}.png"))
