"""The building blocks of every section: the strict base model and small validators."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

BCM_PINS: Final = range(28)
"""GPIO numbers (BCM) usable for locks and door sensors on a Raspberry Pi header."""
RS485_BOARDS: Final = range(10)
RS485_CHANNELS: Final = range(1, 17)
"""A KR-CU16 board drives 16 locks, numbered from 1."""


class Section(BaseModel):
    # Inputs stay out of ValidationError's own str() so a password can never reach a log;
    # load_config renders errors itself and hides secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def identifier(max_length: int) -> AfterValidator:
    """Accept 1..max_length characters that are safe in MQTT topics and file names."""

    def check(value: str) -> str:
        if not (1 <= len(value) <= max_length and re.fullmatch(r"[A-Za-z0-9_-]+", value)):
            raise ValueError(f"must be 1-{max_length} characters of A-Z, a-z, 0-9, '_' or '-'")
        return value

    return AfterValidator(check)


def upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def int_from_digits(value: object) -> object:
    """Let an environment variable (always a string) select an integer literal."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def protocol_name(value: object) -> object:
    """Accept ``protocol = 5`` as well as ``protocol = "5"``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def false_means_never(value: object) -> object:
    """TOML has no null, so ``false`` is how a file says "never"."""
    if value is False or (isinstance(value, str) and value.lower() == "false"):
        return None
    if value is True:
        raise ValueError("must be a number of seconds, or false for never")
    return value


def pin_or_channel(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError('must be a GPIO number or an RS485 channel "BOARD:CHANNEL"')


LockerId = Annotated[str, identifier(64)]
CompartmentId = Annotated[str, identifier(16)]
SizeName = Annotated[str, identifier(16)]
HardwareAddress = Annotated[int | str | None, BeforeValidator(pin_or_channel)]
"""A BCM pin number (gpio backend) or a ``"BOARD:CHANNEL"`` string (rs485 backend)."""


def parse_board_channel(value: str) -> tuple[int, int]:
    """Split an RS485 lock address such as ``"1:16"`` into ``(board, channel)``.

    Raises :class:`ValueError` with a message fit to show an operator.
    """
    match = re.fullmatch(r"([0-9]+):([0-9]+)", value)
    if match is None:
        raise ValueError('must be "BOARD:CHANNEL", e.g. "0:1"')
    board, channel = int(match[1]), int(match[2])
    if board not in RS485_BOARDS:
        raise ValueError(f"board must be {RS485_BOARDS[0]}-{RS485_BOARDS[-1]}, not {board}")
    if channel not in RS485_CHANNELS:
        raise ValueError(f"channel must be {RS485_CHANNELS[0]}-{RS485_CHANNELS[-1]}, not {channel}")
    return board, channel
