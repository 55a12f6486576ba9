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
