"""Headless Chromium (Debian's, never downloaded) for the dashboard's page tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

CHROMIUM = os.environ.get("LOCKER_AGENT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS_ENV = "DASHBOARD_SCREENSHOTS"
"""Set to a directory (e.g. docs/img) to save the main screens as dashboard-*.png."""


def chromium_path() -> str:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: bash scripts/ensure-system-packages.sh chromium")
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get(SCREENSHOTS_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"dashboard-{name}.png"))


def sign_in(page: Page, token: str) -> None:
    """Sign in on the page's form with an operator's token (the token says who)."""
    page.fill("input[name=token]", token)
    page.click("#sign-in button[type=submit]")


def signed_in(page: Page, token: str, operator: str) -> None:
    """Sign in and wait for the fleet view to show ``operator`` and its first snapshot."""
    sign_in(page, token)
    expect(page.locator("#operator")).to_have_text(operator)
    page.wait_for_selector("body[data-rendered]")
