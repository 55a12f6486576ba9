#!/usr/bin/env python3
"""Build the kiosk's web font: the glyphs its texts use, cut from Noto Sans CJK TC.

A bare locker board has no CJK font, so the Chinese texts would be boxes. The kiosk ships
``locker_agent/api/kiosk/fonts/kiosk-cjk.woff2`` (served with ``@font-face``, nothing from
outside) holding only the characters of its texts: every string of ``i18n/*.json``, the
literal texts and labels of ``index.html``, and printable ASCII (door labels, barcodes and
courier ids come from the config and the cloud). Its licence, the SIL OFL 1.1, goes beside it
as ``OFL.txt``.

Run it whenever a kiosk text changes (``tests/api/test_kiosk_font.py`` fails until you do):

    bash scripts/ensure-system-packages.sh fonts-noto-cjk
    .venv/bin/python scripts/build-kiosk-font.py

Reproducible: the same source font, texts, fontTools and brotli give the same bytes (no
timestamp is written; the source's own dates are kept). ``--check`` builds in memory and
exits 1 if the shipped files differ.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import brotli
import fontTools
from fontTools import subset
from fontTools.ttLib import TTFont

REPO = Path(__file__).resolve().parent.parent
KIOSK = REPO / "locker_agent" / "api" / "kiosk"
FONT = KIOSK / "fonts" / "kiosk-cjk.woff2"
LICENCE = KIOSK / "fonts" / "OFL.txt"

SOURCE = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
SOURCE_PACKAGE = "fonts-noto-cjk"
SOURCE_COPYRIGHT = Path("/usr/share/doc/fonts-noto-cjk/copyright")
FACE_INDEX = 3
"""The TC (Traditional Chinese, Taiwan) face of the collection: JP, KR, SC, TC, HK, then Mono."""
FACE_FAMILY = "Noto Sans CJK TC"

FAMILY = "Kiosk Sans CJK"
POSTSCRIPT = "KioskSansCJK-Regular"
ASCII = range(0x20, 0x7F)
TRANSLATABLE_ATTRIBUTES = ("aria-label", "title", "alt", "placeholder")
LAYOUT_FEATURES = ["ccmp", "rlig", "liga", "clig", "calt", "kern", "mark", "mkmk"]


class _Texts(HTMLParser):
    """The text a person can see or hear in an HTML page: its text and its labels."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        self.texts.extend(v for k, v in attrs if k in TRANSLATABLE_ATTRIBUTES and v)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.texts.append(data)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def kiosk_texts(kiosk: Path = KIOSK) -> list[str]:
    """Every text of the kiosk: the translations and the page's own words."""
    texts: list[str] = []
    for path in sorted((kiosk / "i18n").glob("*.json")):
        texts.extend(_strings(json.loads(path.read_text(encoding="utf-8"))))
    page = _Texts()
    page.feed((kiosk / "index.html").read_text(encoding="utf-8"))
    texts.extend(page.texts)
    return texts


def codepoints(texts: list[str]) -> list[int]:
    """The characters the font must draw: those of ``texts`` (no line breaks or tabs) and
    printable ASCII."""
    wanted = set(ASCII)
    for text in texts:
        wanted.update(ord(c) for c in text if c.isprintable())
    return sorted(wanted)


def _source_face(source: Path) -> TTFont:
    font = TTFont(source, fontNumber=FACE_INDEX, recalcTimestamp=False, lazy=False)
    family = font["name"].getDebugName(1)
    if family != FACE_FAMILY:
        raise SystemExit(f"{source} face {FACE_INDEX} is {family!r}, not {FACE_FAMILY!r}")
    return font


def _rename(font: TTFont, version: str) -> None:
    """A Modified Version gets its own name (OFL): the kiosk's, not the source's."""
    name = font["name"]
    for record in list(name.names):
        if record.nameID in (1, 2, 3, 4, 6, 16, 17, 18, 21, 22):
            name.removeNames(nameID=record.nameID)
    for name_id, value in {
        1: FAMILY,
        2: "Regular",
        3: f"{version};{POSTSCRIPT}",
        4: FAMILY,
        6: POSTSCRIPT,
        10: f"The locker kiosk's texts, cut from {FACE_FAMILY} {version} "
            "by scripts/build-kiosk-font.py.",
    }.items():
        name.setName(value, name_id, 3, 1, 0x409)


def build_font(source: Path, wanted: list[int]) -> bytes:
    font = _source_face(source)
    missing = [c for c in wanted if c not in font.getBestCmap()]
    if missing:
        listed = " ".join(f"U+{c:04X} {chr(c)!r}" for c in missing)
        raise SystemExit(f"{FACE_FAMILY} has no glyph for: {listed}; change the text")
    version = font["name"].getDebugName(5) or "?"
    version = version.split(";")[0].removeprefix("Version ").strip()

    options = subset.Options()
    options.flavor = "woff2"
    options.hinting = False          # big type on a kiosk; CFF hints are a third of the size
    options.desubroutinize = True    # compresses better under woff2's brotli
    options.drop_tables += ["VORG", "vhea", "vmtx", "BASE"]  # horizontal text only
    # the features a browser turns on for horizontal text; not ``locl``, whose Japanese,
    # Korean, Simplified and Hong Kong forms would double the glyphs (TC's are the defaults)
    options.layout_features = LAYOUT_FEATURES
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 13, 14]  # keep copyright and licence
    options.notdef_outline = True
    options.recalc_timestamp = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=wanted)
    subsetter.subset(font)
    _rename(font, version)
    font["head"].modified = font["head"].created  # the source's date, never the build's

    out = io.BytesIO()
    subset.save_font(font, out, options)
    return out.getvalue()


def _debian_version(package: str) -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _ofl_text(copyright_file: Path) -> str:
    """The SIL OFL 1.1 as Debian's copyright file holds it (its ``License: SIL-1.1`` stanza)."""
    lines = copyright_file.read_text(encoding="utf-8").splitlines()
    start = lines.index("License: SIL-1.1", lines.index("License: SIL-1.1") + 1)
    body: list[str] = []
    for line in lines[start + 1:]:
        if not line.startswith(" "):
            break
        body.append("" if line.strip() == "." else line[1:])
    if not any("SIL OPEN FONT LICENSE Version 1.1" in line for line in body):
        raise SystemExit(f"no SIL OFL 1.1 text in {copyright_file}")
    return "\n".join(body).strip("\n") + "\n"


def build_licence(source: Path, font_bytes: bytes) -> str:
    face = _source_face(source)
    name = face["name"]
    source_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    header = [
        f"{FAMILY} (kiosk-cjk.woff2) is a subset of {FACE_FAMILY}, a Modified Version",
        "under the SIL Open Font License 1.1 below, under which it is distributed.",
        "",
        f"Copyright: {name.getDebugName(0)}",
        f"Trademark: {name.getDebugName(7)}",
        "",
        "Built by scripts/build-kiosk-font.py from:",
        f"  {source} (face {FACE_INDEX}, {name.getDebugName(5)})",
        f"  Debian package {SOURCE_PACKAGE} {_debian_version(SOURCE_PACKAGE)}",
        f"  sha256 {source_hash}",
        f"  with fontTools {fontTools.version} and brotli {brotli.__version__}",
        f"  kiosk-cjk.woff2: {len(font_bytes)} bytes, "
        f"sha256 {hashlib.sha256(font_bytes).hexdigest()}",
        "",
        "",
    ]
    return "\n".join(header) + _ofl_text(SOURCE_COPYRIGHT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help=f"Noto Sans CJK collection (default: {SOURCE})")
    parser.add_argument("--check", action="store_true",
                        help="build in memory; exit 1 if the shipped files differ")
    args = parser.parse_args(argv)
    if not args.source.exists():
        print(f"{args.source} is missing: bash scripts/ensure-system-packages.sh "
              f"{SOURCE_PACKAGE}", file=sys.stderr)
        return 2

    wanted = codepoints(kiosk_texts())
    font_bytes = build_font(args.source, wanted)
    licence = build_licence(args.source, font_bytes)
    if args.check:
        same = (FONT.exists() and FONT.read_bytes() == font_bytes
                and LICENCE.exists() and LICENCE.read_text(encoding="utf-8") == licence)
        print(f"{FONT.relative_to(REPO)}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    FONT.parent.mkdir(parents=True, exist_ok=True)
    FONT.write_bytes(font_bytes)
    LICENCE.write_text(licence, encoding="utf-8")
    print(f"{FONT.relative_to(REPO)}: {len(wanted)} characters, {len(font_bytes)} bytes, "
          f"sha256 {hashlib.sha256(font_bytes).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
