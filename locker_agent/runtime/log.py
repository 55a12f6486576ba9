"""Log lines for journald: one line per event, ``key=value`` (default) or JSON.

Call sites pass structured fields with ``extra={"fields": {...}}``. Codes never reach a log:
nothing in the agent passes one, and :class:`CodeEntry` hides its text from ``repr``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/+@")


def _quote(value: object) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        value = ",".join(str(item) for item in value)
    text = "null" if value is None else str(value)
    if text and all(ch in _SAFE for ch in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        line = " ".join(f"{key}={_quote(value)}" for key, value in parts.items())
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "keyvalue") -> None:
    """Send every log line to stderr in the chosen format (journald captures stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("sqlalchemy", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs every unanswered request as an error; the modbus driver tells a unit going
    # offline (and back) once, itself
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # asyncio repeats some errors in a tight loop ("socket.accept() out of system resource"):
    # a flood of them must not fill the journal and push out what matters
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, RepeatFilter) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(RepeatFilter())


class RepeatFilter(logging.Filter):
    """Lets the same message through at most once per ``interval_s``; says how many it held.

    "The same" is the message template (``record.msg``), so lines that differ only in their
    arguments count as one.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:200]
        last, held = self._last.get(key, (float("-inf"), 0))
        if record.created - last < self.interval_s:
            self._last[key] = (last, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} (and {held} more like it in {self.interval_s:g} s)"
        self._last[key] = (record.created, 0)
        if len(self._last) > 1000:  # bounded: forget the oldest templates
            for old in sorted(self._last, key=lambda k: self._last[k][0])[:500]:
                del self._last[old]
        return True
