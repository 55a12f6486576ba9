"""Log line formats for journald: key=value (one line, quoted where needed) and JSON."""

from __future__ import annotations

import io
import json
import logging
import shlex
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from locker_agent.runtime.log import JsonFormatter, KeyValueFormatter, configure_logging


def emit(
    formatter: logging.Formatter,
    msg: str,
    *args: object,
    fields: dict[str, Any] | None = None,
    level: int = logging.INFO,
    exc_info: bool = False,
) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("locker_agent.test_log")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        extra = {"fields": fields} if fields is not None else None
        logger.log(level, msg, *args, extra=extra, exc_info=exc_info)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def parse_kv(line: str) -> dict[str, str]:
    """Split a key=value line the way a shell (or a log parser honouring quotes) would."""
    return dict(token.split("=", 1) for token in shlex.split(line))


def assert_recent_utc(ts: str) -> None:
    stamp = datetime.fromisoformat(ts)
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)


# ------------------------------------------------------------------------ key=value


def test_key_value_line_has_the_standard_fields_then_the_extra_ones() -> None:
    out = emit(KeyValueFormatter(), "door opened", fields={"compartment": "A01", "seq": 7})

    assert out.count("\n") == 1
    line = out.rstrip("\n")
    assert line.startswith("ts=")
    assert line.endswith(' level=INFO logger=locker_agent.test_log msg="door opened"'
                         " compartment=A01 seq=7")
    keys = [token.split("=", 1)[0] for token in line.split(" ") if "=" in token]
    assert keys[:4] == ["ts", "level", "logger", "msg"]
    assert_recent_utc(parse_kv(line)["ts"])


def test_key_value_quotes_values_with_spaces_and_joins_lists() -> None:
    line = emit(
        KeyValueFormatter(),
        "unlock %s",
        "requested",
        level=logging.WARNING,
        fields={
            "reason": "door jammed",
            "ids": ["P1", "P2", "P3"],
            "ids_tuple": ("a", "b"),
            "spaced": ["two words", "x"],
            "quoted": 'say "hi"',
            "empty": "",
            "none": None,
            "path": "/var/lib/locker",
        },
    ).rstrip("\n")

    assert "level=WARNING" in line
    assert 'msg="unlock requested"' in line
    assert 'reason="door jammed"' in line
    assert 'spaced="two words,x"' in line
    assert 'quoted="say \\"hi\\""' in line
    assert 'empty=""' in line
    assert "none=null" in line
    assert "path=/var/lib/locker" in line
    parsed = parse_kv(line)
    assert parsed["ids"] == "P1,P2,P3"
    assert parsed["ids_tuple"] == "a,b"
    assert parsed["reason"] == "door jammed"
    assert parsed["spaced"] == "two words,x"
    assert parsed["quoted"] == 'say "hi"'


def test_key_value_message_with_a_newline_stays_on_one_line() -> None:
    out = emit(KeyValueFormatter(), "first\nsecond", fields={"note": "a\nb"})

    assert out.count("\n") == 1
    assert 'msg="first\\nsecond"' in out
    assert 'note="a\\nb"' in out


def test_key_value_exception_adds_exc_and_stays_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        out = emit(
            KeyValueFormatter(), "commit failed", level=logging.ERROR, exc_info=True,
            fields={"seq": 3},
        )

    assert out.count("\n") == 1
    line = out.rstrip("\n")
    assert "level=ERROR" in line
    head, exc = line.split(" exc=", 1)
    assert head.endswith('msg="commit failed" seq=3')
    traceback = json.loads(exc)
    assert traceback.startswith("Traceback (most recent call last):")
    assert "ValueError: boom" in traceback
    assert "\n" in traceback  # the newlines are escaped in the line, not lost


# ----------------------------------------------------------------------------- JSON


def test_json_line_is_valid_json_with_the_fields() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    out = emit(
        JsonFormatter(),
        "door %s",
        "opened",
        fields={"compartment": "A01", "ids": ["P1", "P2"], "at": when, "seq": 7, "ok": True},
    )

    assert out.count("\n") == 1
    document = json.loads(out)
    assert document["level"] == "INFO"
    assert document["logger"] == "locker_agent.test_log"
    assert document["msg"] == "door opened"
    assert document["compartment"] == "A01"
    assert document["ids"] == ["P1", "P2"]
    assert document["at"] == str(when)
    assert document["seq"] == 7
    assert document["ok"] is True
    assert "exc" not in document
    assert_recent_utc(document["ts"])


def test_json_without_fields_has_just_the_standard_ones() -> None:
    document = json.loads(emit(JsonFormatter(), "hello ünïcode"))

    assert set(document) == {"ts", "level", "logger", "msg"}
    assert document["msg"] == "hello ünïcode"


def test_json_exception_adds_exc() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        out = emit(JsonFormatter(), "oops", level=logging.ERROR, exc_info=True)

    assert out.count("\n") == 1
    document = json.loads(out)
    assert document["level"] == "ERROR"
    assert "KeyError: 'missing'" in document["exc"]


# ------------------------------------------------------------------- configuration


@pytest.fixture
def restore_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("sqlalchemy", "asyncio", "pymodbus")}
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.parametrize(
    ("fmt", "formatter"), [("keyvalue", KeyValueFormatter), ("json", JsonFormatter)]
)
def test_configure_logging_installs_one_stderr_handler(
    restore_root_logger: logging.Logger, fmt: str, formatter: type[logging.Formatter]
) -> None:
    root = restore_root_logger
    root.addHandler(logging.NullHandler())

    configure_logging("DEBUG", fmt)

    assert len(root.handlers) == 1
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr
    assert isinstance(handler.formatter, formatter)
    assert root.level == logging.DEBUG
    assert logging.getLogger("sqlalchemy").level == logging.WARNING
    assert logging.getLogger("pymodbus").level == logging.CRITICAL  # the driver says it once

    configure_logging("INFO", fmt)
    assert len(root.handlers) == 1
    assert root.level == logging.INFO
