"""The kiosk's own font draws every character of every kiosk text, and is served with it.

The texts are read here without the build script's help: every string of the translations,
and the words and labels of the page. A text that gains a character the font lacks fails
until ``scripts/build-kiosk-font.py`` is run again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
from fontTools.ttLib import TTFont

from tests.conftest import REPO

KIOSK = REPO / "locker_agent" / "api" / "kiosk"
FONT = KIOSK / "fonts" / "kiosk-cjk.woff2"
REBUILD = (
    "run `bash scripts/ensure-system-packages.sh fonts-noto-cjk && "
    ".venv/bin/python scripts/build-kiosk-font.py` and commit the new font"
)
MAX_BYTES = 100_000
"""The font stays small: it is loaded by the page on every start of the kiosk browser."""


class PageTexts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.in_code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_code += tag in ("script", "style")
        self.texts += [v for k, v in attrs if k in ("aria-label", "title", "alt") and v]

    def handle_endtag(self, tag: str) -> None:
        self.in_code -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.in_code:
            self.texts.append(data)


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)


def kiosk_texts() -> dict[str, str]:
    """Where each text comes from -> the text."""
    texts = {}
    for path in sorted((KIOSK / "i18n").glob("*.json")):
        for key, text in json.loads(path.read_text(encoding="utf-8")).items():
            texts.update({f"i18n/{path.name} {key}": s for s in strings(text)})
    page = PageTexts()
    page.feed((KIOSK / "index.html").read_text(encoding="utf-8"))
    texts.update({f"index.html {i}": text for i, text in enumerate(page.texts)})
    return texts


def test_the_kiosk_font_has_a_glyph_for_every_character_of_every_kiosk_text() -> None:
    cmap = TTFont(FONT)["cmap"].getBestCmap()
    missing = {
        f"{c!r} (U+{ord(c):04X}) in {where}"
        for where, text in kiosk_texts().items() for c in text
        if c.isprintable() and ord(c) not in cmap
    }
    assert not missing, (
        f"{FONT.name} lacks characters the kiosk shows: {sorted(missing)}; {REBUILD}"
    )
    # the doors' labels, barcodes and courier ids come from outside: printable ASCII
    assert all(c in cmap for c in range(0x20, 0x7F)), REBUILD


def test_the_kiosk_font_is_small_and_ships_with_its_licence() -> None:
    font = TTFont(FONT)
    assert font.flavor == "woff2"
    assert FONT.stat().st_size < MAX_BYTES, f"{FONT.stat().st_size} bytes"
    assert font["name"].getDebugName(1) == "Kiosk Sans CJK"  # not the source's name (OFL)
    licence = (FONT.parent / "OFL.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence
    assert str(font["name"].getDebugName(0)) in licence  # the source's copyright notice


def test_the_page_loads_the_font_from_the_locker(client: httpx.Client) -> None:
    css = client.get("/kiosk/kiosk.css").text
    assert 'url("fonts/kiosk-cjk.woff2")' in css
    font = client.get("/kiosk/fonts/kiosk-cjk.woff2")
    assert font.status_code == 200
    assert font.headers["content-type"] == "font/woff2"
    assert font.content == FONT.read_bytes()
    assert client.get("/kiosk/fonts/OFL.txt").status_code == 200


def test_the_package_installs_the_font() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"api/kiosk/fonts/*"' in pyproject
    assert Path(REPO / "scripts" / "build-kiosk-font.py").exists()
