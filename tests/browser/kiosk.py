"""What the browser tests measure on a kiosk screen: its layout, its fonts, axe's verdict.

Each check returns a list of problems (empty when the screen is right), so one assertion can
name everything wrong with a screen at once.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from fontTools.ttLib import TTFont
from playwright.sync_api import CDPSession, Page

from tests.conftest import REPO

KIOSK_FONT = REPO / "locker_agent" / "api" / "kiosk" / "fonts" / "kiosk-cjk.woff2"
KIOSK_FAMILY = "Kiosk Sans CJK"
SYSTEM_LATIN = "DejaVu Sans"
"""The system font the page asks for first (kiosk.css ``--latin``); Debian's base images have
it. Any other system font in a kiosk text means a fallback the kiosk did not choose."""


@dataclass(frozen=True)
class Size:
    name: str
    width: int
    height: int

    @property
    def viewport(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height}

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


SIZES = [Size("phone", 390, 844), Size("portrait", 800, 1280), Size("landscape", 1280, 800)]
LANGUAGES = ["en", "ru", "zh-Hant", "it"]
MIN_TARGET_PX = 48
FILLED = 0.85
"""A screen's content reaches at least this far down the viewport: a tall screen is used."""

_LAYOUT = """
({ mustSee, target, filled }) => {
  window.scrollTo(0, 0);
  const vw = document.documentElement.clientWidth, vh = window.innerHeight;
  const problems = [];
  const shown = (el) => el.checkVisibility() && el.getClientRects().length > 0
    && !el.closest(".visually-hidden");
  const name = (el) => el.id ? `#${el.id}`
    : `${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 24)}"`;
  const whole = document.documentElement;
  if (whole.scrollWidth > vw) problems.push(`the page is ${whole.scrollWidth} px wide`);
  for (const el of document.body.querySelectorAll("*")) {
    if (!shown(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.left < -0.5 || r.right > vw + 0.5) {
      problems.push(`${name(el)} runs off the screen (${r.left.toFixed()}..${r.right.toFixed()})`);
    }
  }
  for (const el of document.querySelectorAll("button, input")) {
    if (!shown(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width < target || r.height < target) {
      problems.push(`${name(el)} is ${r.width.toFixed()}x${r.height.toFixed()} px`);
    }
    if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1) {
      problems.push(`the text spills out of ${name(el)}`);
    }
    if (el.tagName === "BUTTON" && el.textContent.trim()) {
      const range = document.createRange();
      range.selectNodeContents(el);
      const lines = Math.round(range.getBoundingClientRect().height
                               / parseFloat(getComputedStyle(el).lineHeight));
      if (lines > 2) problems.push(`${name(el)} wraps to ${lines} lines`);
    }
  }
  for (const selector of mustSee) {
    const el = document.querySelector(selector);
    if (!el || !shown(el)) { problems.push(`${selector} is not shown`); continue; }
    const r = el.getBoundingClientRect();
    if (r.top < 0 || r.bottom > vh + 0.5) {
      const span = `${r.top.toFixed()}..${r.bottom.toFixed()} of ${vh}`;
      problems.push(`${selector} is not in the first viewport (${span})`);
    }
  }
  const screen = document.querySelector(".screen:not([hidden])");
  const bottom = Math.max(...[...screen.querySelectorAll("*")].filter(shown)
    .map((el) => el.getBoundingClientRect().bottom));
  if (bottom < filled * vh) {
    problems.push(`the screen's content ends at ${bottom.toFixed()} px of ${vh}`);
  }
  return problems;
}
"""


def layout_problems(page: Page, must_see: list[str]) -> list[str]:
    """No sideways scroll, nothing off the screen, targets of 48 px whose text fits them,
    ``must_see`` in the first viewport, and the screen's content using its height."""
    problems: list[str] = page.evaluate(
        _LAYOUT, {"mustSee": must_see, "target": MIN_TARGET_PX, "filled": FILLED})
    return problems


# ------------------------------------------------------------------------------- texts

I18N = REPO / "locker_agent" / "api" / "kiosk" / "i18n"


@functools.cache
def _texts(lang: str) -> dict[str, str]:
    texts: dict[str, str] = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
    return texts


def untranslated(page: Page, lang: str) -> list[str]:
    """English left on screen in another language: a message said before the switch, or a
    text the switch forgot. Each English text's pieces between its ``{placeholders}`` of 8
    characters or more are looked for (unless ``lang`` says the same)."""
    if lang == "en":
        return []
    shown = page.evaluate("document.body.innerText")
    same = " ".join(_texts(lang).values())
    pieces = {piece.strip() for text in _texts("en").values()
              for piece in re.split(r"\{\w+\}", text)}
    return [f"{piece!r} is still in English" for piece in sorted(pieces)
            if len(piece) >= 8 and piece in shown and piece not in same]


# ------------------------------------------------------------------------------- fonts

_MARK_TEXTS = """
() => {
  const texts = [];
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.data).join("");
    if (!own.trim() || !el.checkVisibility() || !el.getClientRects().length) continue;
    el.dataset.fontProbe = String(texts.length);
    texts.push(own);
  }
  return texts;
}
"""
_UNMARK = """() => { for (const el of document.querySelectorAll("[data-font-probe]"))
  delete el.dataset.fontProbe; }"""


@functools.cache
def _cmap(path: str) -> frozenset[int]:
    return frozenset(TTFont(path)["cmap"].getBestCmap())


@functools.cache
def _system_font_file(family: str) -> str:
    return subprocess.run(["fc-match", "-f", "%{file}", family], check=True,
                          capture_output=True, text=True).stdout


def font_problems(page: Page, cdp: CDPSession) -> list[str]:
    """Every shown text is drawn by the kiosk's font, or by the system Latin font that has
    its characters: no character falls back to a box or to a font the kiosk did not ship.

    Chromium says which platform fonts drew each element's text, and how many glyphs each
    (a box counts as a glyph of the font that drew it, so the fonts' own character maps say
    whether it had the character): only the kiosk font and DejaVu Sans may be used, every
    character must be in one of them, and the kiosk font must have drawn at least as many
    glyphs as the text has characters that DejaVu Sans lacks.
    """
    page.evaluate("document.fonts.ready.then(() => true)")
    texts: list[str] = page.evaluate(_MARK_TEXTS)
    kiosk = _cmap(str(KIOSK_FONT))
    latin = _cmap(_system_font_file(SYSTEM_LATIN))
    problems = []
    try:
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        nodes = cdp.send("DOM.querySelectorAll",
                         {"nodeId": root, "selector": "[data-font-probe]"})["nodeIds"]
        for node in nodes:
            attributes = cdp.send("DOM.getAttributes", {"nodeId": node})["attributes"]
            probe = int(dict(zip(attributes[::2], attributes[1::2], strict=True))
                        ["data-font-probe"])
            text = texts[probe]
            fonts: list[dict[str, Any]] = cdp.send(
                "CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
            drawn_by_kiosk = sum(f["glyphCount"] for f in fonts
                                 if f["isCustomFont"] and f["familyName"] == KIOSK_FAMILY)
            others = {f["familyName"] for f in fonts
                      if not (f["isCustomFont"] and f["familyName"] == KIOSK_FAMILY)}
            if others - {SYSTEM_LATIN}:
                problems.append(f"{text!r} is drawn with {sorted(others)}")
            needs_kiosk = [c for c in text if not c.isspace() and ord(c) not in latin]
            lacking = sorted({c for c in needs_kiosk if ord(c) not in kiosk})
            if lacking:
                problems.append(f"{text!r}: {lacking} are in no font the kiosk has "
                                "(run scripts/build-kiosk-font.py)")
            elif drawn_by_kiosk < len(needs_kiosk):
                problems.append(f"{text!r}: {len(needs_kiosk)} characters need the kiosk "
                                f"font, it drew {drawn_by_kiosk} ({fonts})")
    finally:
        page.evaluate(_UNMARK)
    return problems


def font_session(page: Page) -> CDPSession:
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    return cdp


# --------------------------------------------------------------------------------- axe

AXE_OPTIONS = {
    "rules": {"color-contrast-enhanced": {"enabled": True}},  # AAA (7:1), off by default
    "resultTypes": ["violations", "incomplete"],
}
_axe = Axe()


def axe_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations, and any text below 7:1 contrast."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_axe.axe_script)  # once per page: it is half a megabyte
    results = page.evaluate("(options) => axe.run(document, options)", AXE_OPTIONS)
    ran = {rule["id"] for kind in ("passes", "violations", "incomplete", "inapplicable")
           for rule in results[kind]}
    assert "color-contrast-enhanced" in ran, "axe did not check the 7:1 contrast"
    problems = []
    for violation in results["violations"]:
        if violation["impact"] in ("serious", "critical") or violation["id"].startswith(
                "color-contrast"):
            targets = [node["target"] for node in violation["nodes"]]
            problems.append(f"{violation['id']} ({violation['impact']}): "
                            f"{violation['help']} at {targets}")
    for unsure in results["incomplete"]:
        if unsure["id"] == "color-contrast-enhanced":
            # text axe could not measure (over an image, under another element...) is a fail
            targets = [node["target"] for node in unsure["nodes"]]
            problems.append(f"axe could not measure the contrast of {targets}")
    return problems
