"""``[hardware]``: the lock backend (simulated, GPIO, RS485, Modbus), keypad and scanner."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, Field, model_validator

from locker_agent.config.fields import (
    BCM_PINS,
    MODBUS_CHANNELS,
    Section,
    false_means_never,
    int_from_digits,
    upper,
)
from locker_agent.config.problems import Problem, Problems


class SimulatedHardware(Section):
    auto_open_on_unlock: bool = True
    """The simulated door swings open by itself after an unlock pulse."""
    auto_close_after_s: Annotated[float | None, BeforeValidator(false_means_never)] = Field(
        default=5.0, gt=0
    )
    """Close the simulated door this long after it opened; None: it stays open until closed."""
    console: bool = True
    """Read codes and commands from the terminal when stdin is a tty."""


class GpioHardware(Section):
    relay_active_high: bool = True
    """A high output energises the lock relay."""
    door_closed_when: Literal["high", "low"] = "low"
    """Level a closed door reads; a reed switch to ground with a pull-up reads low."""
    door_debounce_ms: int = Field(default=50, ge=0, le=1000)
    door_poll_interval_s: float = Field(default=1.0, gt=0)
    """Door sensors are also polled this often, in case an edge was missed."""
    pin_factory: str | None = Field(default=None, min_length=1)
    """gpiozero pin factory name (e.g. "lgpio"); None lets gpiozero choose."""


class Rs485Hardware(Section):
    port: str = Field(default="/dev/ttyUSB0", min_length=1)
    baudrate: Annotated[Literal[9600, 19200, 57600, 115200], BeforeValidator(int_from_digits)] = (
        19200
    )
    timeout_ms: int = Field(default=200, ge=10, le=5000)
    retries: int = Field(default=2, ge=0, le=10)
    """Repeats of a status request after a timeout or a corrupt reply. An unlock is never
    repeated: a lost answer cannot be told from a lost frame, and a repeat pulses twice."""
    inter_frame_gap_ms: int = Field(default=5, ge=0, le=1000)
    lock_bit_open_when_set: bool = False
    """How a board's status reply reads: false (KR-CU16, as its public notes say): a set bit
    means that door is closed, so an idle board answers ff ff; true for boards that read the
    other way (NCU16L). hw-test says when every door reads open: then flip it."""
    poll_interval_s: float = Field(default=0.5, gt=0)
    fast_poll_interval_ms: int = Field(default=50, ge=10, le=1000)
    """A board is polled this often while a door it just unlocked may open (door_watch_s), so
    a door opened and shut within a fraction of a second is still seen."""
    door_watch_s: float | None = Field(default=None, ge=0, le=600)
    """How long after an unlock the board is polled fast (until that door reads open);
    None: policies.door_open_timeout_s, the whole window before the door is called jammed."""
    answers_unlock: bool = True
    """The board model answers an unlock (0x31) with a status frame (KR-CU16 does). false for
    compatibles that execute it silently: the driver then does not wait for an answer."""
    set_unlock_time: bool = False
    """Send each board policies.lock_pulse_ms as its unlock time (0x37) at start; only once
    the frame is checked on this board model (docs/hardware.md). Off: the board's own time."""


MAX_MODBUS_ADDRESS: Final = 0xFFFF
FIRST_ADDRESS_LIMIT: Final = MAX_MODBUS_ADDRESS - (MODBUS_CHANNELS[-1] - 1)
"""Highest first address that still leaves room for every channel in Modbus's 16 bits."""


class ModbusHardware(Section):
    """Relay boards speaking Modbus RTU on one RS485 bus: locks on coils, doors on inputs."""

    port: str = Field(default="/dev/ttyUSB0", min_length=1)
    """Serial device of the USB-RS485 adapter; a /dev/serial/by-id/... path survives
    re-plugging."""
    baudrate: Annotated[
        Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200],
        BeforeValidator(int_from_digits),
    ] = 9600
    parity: Annotated[Literal["N", "E", "O"], BeforeValidator(upper)] = "N"
    stopbits: Annotated[Literal[1, 2], BeforeValidator(int_from_digits)] = 1
    timeout_ms: int = Field(default=200, ge=10, le=5000)
    """How long to wait for a board's reply to one request."""
    retries: int = Field(default=2, ge=0, le=10)
    """Times a request is sent again after no reply or a corrupt one."""
    inter_frame_gap_ms: int = Field(default=5, ge=0, le=1000)
    """Silence kept between frames; never less than Modbus RTU's 3.5 characters."""
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    """Every board's coils and inputs are read this often: doors, and relays left on."""
    first_coil_address: int = Field(default=0, ge=0, le=FIRST_ADDRESS_LIMIT)
    """Modbus address of relay 1 (its coil; 0 in Waveshare's V2 protocol)."""
    first_input_address: int = Field(default=0, ge=0, le=FIRST_ADDRESS_LIMIT)
    """Modbus address of input 1 (its discrete input; 0 on the same boards)."""
    door_closed_when: Literal["on", "off"] = "on"
    """What a shut door's input reads: "on" for a reed switch or microswitch that closes
    its contact when the door is shut (the usual wiring), "off" for one that opens it."""


KEYPAD_LAYOUTS: Final = {"3x4": "123456789*0#", "4x4": "123A456B789C*0#D"}
"""Key legends row by row, top left first, of the two common membrane keypads."""

BcmPin = Annotated[int, Field(ge=BCM_PINS[0], le=BCM_PINS[-1])]


class KeypadHardware(Section):
    """A matrix keypad on GPIO pins, scanned through gpiozero (with any backend)."""

    layout: Literal["3x4", "4x4"] = "3x4"
    """Columns x rows: "3x4" is 1-9, *, 0, #; "4x4" adds A-D in a fourth column."""
    rows: list[BcmPin]
    """BCM pins of the 4 rows, top first (driven low one at a time)."""
    columns: list[BcmPin]
    """BCM pins of the columns, left first (inputs with pull-ups)."""
    enter_key: str = "#"
    clear_key: str = "*"
    max_length: int = Field(default=16, ge=1, le=64)
    """Keys an entry may have; a longer one is thrown away."""
    entry_timeout_s: float = Field(default=20, gt=0, le=600)
    """An unfinished entry left untouched this long is thrown away."""

    @model_validator(mode="after")
    def _check_layout(self) -> KeypadHardware:
        problems = []
        keys = KEYPAD_LAYOUTS[self.layout]
        width = int(self.layout.split("x")[0])
        if len(self.rows) != 4:
            problems.append(Problem(("rows",), f"a {self.layout} keypad has 4 rows", self.rows))
        if len(self.columns) != width:
            problems.append(Problem(
                ("columns",), f"a {self.layout} keypad has {width} columns", self.columns
            ))
        pins = [*self.rows, *self.columns]
        repeated = sorted({pin for pin in pins if pins.count(pin) > 1})
        if repeated:
            problems.append(Problem(
                ("columns",), f"GPIO {', '.join(map(str, repeated))} used twice", self.columns
            ))
        for name in ("enter_key", "clear_key"):
            key = getattr(self, name)
            if len(key) != 1 or key not in keys:
                problems.append(Problem((name,), f"must be one key of {keys}", key))
        if self.enter_key == self.clear_key:
            problems.append(Problem(("clear_key",), "must differ from enter_key", self.clear_key))
        if problems:
            raise Problems(problems)
        return self


class ScannerHardware(Section):
    """A QR/barcode scanner in serial mode (USB CDC/serial), one code per line."""

    port: str = Field(min_length=1)
    """Serial device; a /dev/serial/by-id/... path survives re-plugging."""
    baudrate: Annotated[
        Literal[9600, 19200, 38400, 57600, 115200], BeforeValidator(int_from_digits)
    ] = 9600
    max_length: int = Field(default=512, ge=8, le=4096)
    """Longest code accepted, in characters; a signed QR token is ~250."""
    line_timeout_ms: int = Field(default=500, ge=20, le=10_000)
    """A line with no terminator and no new byte for this long is thrown away."""


class HardwareConfig(Section):
    backend: Literal["simulated", "gpio", "rs485", "modbus"] = "simulated"
    simulated: SimulatedHardware = SimulatedHardware()
    gpio: GpioHardware = GpioHardware()
    rs485: Rs485Hardware = Rs485Hardware()
    modbus: ModbusHardware = ModbusHardware()
    keypad: KeypadHardware | None = None
    """Off unless a [hardware.keypad] section is present."""
    scanner: ScannerHardware | None = None
    """Off unless a [hardware.scanner] section is present."""
