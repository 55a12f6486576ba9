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
MODBUS_UNITS: Final = range(1, 248)
"""Modbus RTU unit (slave) addresses: 0 is broadcast, 248-255 are reserved."""
MODBUS_CHANNELS: Final = range(1, 257)
"""Relays and inputs of one Modbus relay board, numbered from 1 (boards have 4 to 64)."""


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
    raise ValueError('must be a GPIO number or a channel such as "0:1"')


LockerId = Annotated[str, identifier(64)]
CompartmentId = Annotated[str, identifier(16)]
SizeName = Annotated[str, identifier(16)]
HardwareAddress = Annotated[int | str | None, BeforeValidator(pin_or_channel)]
"""A BCM pin number (gpio backend) or a ``"BOARD:CHANNEL"`` string (rs485, modbus backends)."""

RS485_ADDRESS_FORM: Final = '"BOARD:CHANNEL", e.g. "0:1"'
MODBUS_ADDRESS_FORM: Final = '"UNIT:CHANNEL", e.g. "1:1"'


def parse_board_channel(value: str) -> tuple[int, int]:
    """Split an RS485 lock address such as ``"1:16"`` into ``(board, channel)``.

    Raises :class:`ValueError` with a message fit to show an operator.
    """
    return _parse_pair(value, "board", RS485_BOARDS, RS485_CHANNELS, RS485_ADDRESS_FORM)


def parse_unit_channel(value: str) -> tuple[int, int]:
    """Split a Modbus relay or input address such as ``"1:16"`` into ``(unit, channel)``.

    The unit is the board's Modbus address (1-247), the channel its relay or input number as
    printed on the board (from 1). Raises :class:`ValueError` with a message fit to show an
    operator.
    """
    return _parse_pair(value, "unit", MODBUS_UNITS, MODBUS_CHANNELS, MODBUS_ADDRESS_FORM)


def _parse_pair(
    value: str, first: str, firsts: range, channels: range, form: str
) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]+):([0-9]+)", value)
    if match is None:
        raise ValueError(f"must be {form}")
    number, channel = int(match[1]), int(match[2])
    if number not in firsts:
        raise ValueError(f"{first} must be {firsts[0]}-{firsts[-1]}, not {number}")
    if channel not in channels:
        raise ValueError(f"channel must be {channels[0]}-{channels[-1]}, not {channel}")
    return number, channel
