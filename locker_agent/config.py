"""The agent's configuration: one TOML file, validated, with environment overrides.

:func:`load_config` reads the file with :mod:`tomllib` and validates it into an
:class:`AgentConfig`. Environment variables named ``LOCKER_AGENT_<KEY>`` (nested keys joined
by ``__``, e.g. ``LOCKER_AGENT_MQTT__HOST``) override the file; set one to ``null`` to unset
an optional key. Every problem is reported as a :class:`ConfigError` whose lines name the
file, the key, the offending value and the reason, so a typo on a locker in the field is
found from one log line.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from locker_agent.domain.model import DEFAULT_SIZES

ENV_PREFIX: Final = "LOCKER_AGENT_"
CONFIG_PATH_ENV: Final = "LOCKER_AGENT_CONFIG"
DEFAULT_CONFIG_PATH: Final = Path("/etc/locker-agent/locker-agent.toml")
DEFAULT_STATE_DIR: Final = Path("/var/lib/locker-agent")

BCM_PINS: Final = range(28)
"""GPIO numbers (BCM) usable for locks and door sensors on a Raspberry Pi header."""
RS485_BOARDS: Final = range(10)
RS485_CHANNELS: Final = range(1, 17)
"""A KR-CU16 board drives 16 locks, numbered from 1."""

_MAX_VALUE_CHARS = 60
_SECRET_KEYS = frozenset({"password"})


# --- errors ------------------------------------------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used; one entry in ``problems`` per thing to fix.

    ``str()`` gives one line per problem, each prefixed by the file, e.g.
    ``config/simulated.toml: compartments[3].size = 'XXL': must be one of S, M, L, XL``.
    """

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        super().__init__(path, problems)
        self.path = Path(path)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(f"{self.path}: {problem}" for problem in self.problems)


_UNSET: Final = object()


@dataclass(frozen=True)
class _Problem:
    loc: tuple[str | int, ...]
    message: str
    value: object = _UNSET


class _Problems(ValueError):
    """Problems a cross-field check found, each at its own location below the checked field.

    Pydantic attaches a validator's error to the field being validated (``compartments``);
    :func:`_describe_errors` unpacks these so messages name ``compartments[3].size``.
    """

    def __init__(self, problems: list[_Problem]) -> None:
        super().__init__("; ".join(_describe(p.loc, p.value, p.message) for p in problems))
        self.problems = problems


# --- small validators ----------------------------------------------------------------------


def _identifier(max_length: int) -> AfterValidator:
    """Accept 1..max_length characters that are safe in MQTT topics and file names."""

    def check(value: str) -> str:
        if not (1 <= len(value) <= max_length and re.fullmatch(r"[A-Za-z0-9_-]+", value)):
            raise ValueError(f"must be 1-{max_length} characters of A-Z, a-z, 0-9, '_' or '-'")
        return value

    return AfterValidator(check)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _int_from_digits(value: object) -> object:
    """Let an environment variable (always a string) select an integer literal."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def _protocol_name(value: object) -> object:
    """Accept ``protocol = 5`` as well as ``protocol = "5"``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _false_means_never(value: object) -> object:
    """TOML has no null, so ``false`` is how a file says "never"."""
    if value is False or (isinstance(value, str) and value.lower() == "false"):
        return None
    if value is True:
        raise ValueError("must be a number of seconds, or false for never")
    return value


def _pin_or_channel(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError('must be a GPIO number or an RS485 channel "BOARD:CHANNEL"')


LockerId = Annotated[str, _identifier(64)]
CompartmentId = Annotated[str, _identifier(16)]
SizeName = Annotated[str, _identifier(16)]
HardwareAddress = Annotated[int | str | None, BeforeValidator(_pin_or_channel)]
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


# --- sections ------------------------------------------------------------------------------


class _Section(BaseModel):
    # Inputs stay out of ValidationError's own str() so a password can never reach a log;
    # load_config renders errors itself and hides secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class SimulatedHardware(_Section):
    auto_open_on_unlock: bool = True
    """The simulated door swings open by itself after an unlock pulse."""
    auto_close_after_s: Annotated[float | None, BeforeValidator(_false_means_never)] = Field(
        default=5.0, gt=0
    )
    """Close the simulated door this long after it opened; None: it stays open until closed."""
    console: bool = True
    """Read codes and commands from the terminal when stdin is a tty."""


class GpioHardware(_Section):
    relay_active_high: bool = True
    """A high output energises the lock relay."""
    door_closed_when: Literal["high", "low"] = "low"
    """Level a closed door reads; a reed switch to ground with a pull-up reads low."""
    door_debounce_ms: int = Field(default=50, ge=0, le=1000)
    door_poll_interval_s: float = Field(default=1.0, gt=0)
    """Door sensors are also polled this often, in case an edge was missed."""
    pin_factory: str | None = Field(default=None, min_length=1)
    """gpiozero pin factory name (e.g. "lgpio"); None lets gpiozero choose."""


class Rs485Hardware(_Section):
    port: str = Field(default="/dev/ttyUSB0", min_length=1)
    baudrate: Annotated[Literal[9600, 19200, 57600, 115200], BeforeValidator(_int_from_digits)] = (
        19200
    )
    timeout_ms: int = Field(default=200, ge=10, le=5000)
    retries: int = Field(default=2, ge=0, le=10)
    inter_frame_gap_ms: int = Field(default=5, ge=0, le=1000)
    lock_bit_open_when_set: bool = True
    """A set bit in a board's status reply means that door is open."""
    poll_interval_s: float = Field(default=0.5, gt=0)
    set_unlock_time: bool = False
    """Send each board policies.lock_pulse_ms as its unlock time (0x37) at start; only once
    the frame is checked on this board model (docs/hardware.md). Off: the board's own time."""


KEYPAD_LAYOUTS: Final = {"3x4": "123456789*0#", "4x4": "123A456B789C*0#D"}
"""Key legends row by row, top left first, of the two common membrane keypads."""

BcmPin = Annotated[int, Field(ge=BCM_PINS[0], le=BCM_PINS[-1])]


class KeypadHardware(_Section):
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
            problems.append(_Problem(("rows",), f"a {self.layout} keypad has 4 rows", self.rows))
        if len(self.columns) != width:
            problems.append(_Problem(
                ("columns",), f"a {self.layout} keypad has {width} columns", self.columns
            ))
        pins = [*self.rows, *self.columns]
        repeated = sorted({pin for pin in pins if pins.count(pin) > 1})
        if repeated:
            problems.append(_Problem(
                ("columns",), f"GPIO {', '.join(map(str, repeated))} used twice", self.columns
            ))
        for name in ("enter_key", "clear_key"):
            key = getattr(self, name)
            if len(key) != 1 or key not in keys:
                problems.append(_Problem((name,), f"must be one key of {keys}", key))
        if self.enter_key == self.clear_key:
            problems.append(_Problem(("clear_key",), "must differ from enter_key", self.clear_key))
        if problems:
            raise _Problems(problems)
        return self


class ScannerHardware(_Section):
    """A QR/barcode scanner in serial mode (USB CDC/serial), one code per line."""

    port: str = Field(min_length=1)
    """Serial device; a /dev/serial/by-id/... path survives re-plugging."""
    baudrate: Annotated[
        Literal[9600, 19200, 38400, 57600, 115200], BeforeValidator(_int_from_digits)
    ] = 9600
    max_length: int = Field(default=512, ge=8, le=4096)
    """Longest code accepted, in characters; a signed QR token is ~250."""
    line_timeout_ms: int = Field(default=500, ge=20, le=10_000)
    """A line with no terminator and no new byte for this long is thrown away."""


class HardwareConfig(_Section):
    backend: Literal["simulated", "gpio", "rs485"] = "simulated"
    simulated: SimulatedHardware = SimulatedHardware()
    gpio: GpioHardware = GpioHardware()
    rs485: Rs485Hardware = Rs485Hardware()
    keypad: KeypadHardware | None = None
    """Off unless a [hardware.keypad] section is present."""
    scanner: ScannerHardware | None = None
    """Off unless a [hardware.scanner] section is present."""


class MqttConfig(_Section):
    enabled: bool = True
    host: str | None = Field(default=None, min_length=1)
    """Broker to connect to; None: the agent starts its own local broker."""
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(_protocol_name)] = "5"
    client_id: str | None = Field(default=None, min_length=1)
    """None: ``locker-<locker_id>``; see :attr:`AgentConfig.mqtt_client_id`."""
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_prefix: str = "lockers"
    keepalive_s: int = Field(default=60, ge=5, le=3600)
    operator_public_key: str | None = Field(default=None, min_length=1)
    """Ed25519 key (base64 of 32 bytes, or a PEM file) that signs door-opening commands;
    when set, ``open``, ``remote_pickup``, ``clear_alarm`` and ``set_config`` must carry a
    valid signature."""
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=120.0, gt=0, le=3600)
    """Reconnect backoff doubles from min to max, with equal jitter, so a fleet does not
    stampede a restarted broker."""
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0, le=2**32 - 1)
    """MQTT 5 session expiry: the broker keeps QoS 1 commands for an offline locker this long."""
    max_inflight: int = Field(default=200, ge=1, le=1000)
    """Events published and awaiting the broker's PUBACK at once. Measured: 100,000 queued
    events drain in 17.5 s at 200, 47 s at 20 (docs/benchmarks.md)."""
    command_horizon_h: float = Field(default=168, gt=0, le=24 * 30)
    """A command's expires_at may lie at most this far ahead; command ids are remembered as
    long, so a command can never be applied twice while it is still valid."""
    max_outbox_events: int = Field(default=200_000, ge=1000)
    """Unpublished events kept while offline. At 80 % an alarm is raised; beyond it the oldest
    are dropped and an ``outbox_overflow`` event says exactly which seqs were lost."""

    @field_validator("topic_prefix")
    @classmethod
    def _check_topic_prefix(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if "+" in value or "#" in value:
            raise ValueError("must not contain the MQTT wildcards '+' or '#'")
        if value.startswith("/") or value.endswith("/"):
            raise ValueError("must not start or end with '/'")
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> MqttConfig:
        problems = []
        if self.cert_file is not None and self.key_file is None:
            problems.append(_Problem(("key_file",), "required when cert_file is set"))
        if self.key_file is not None and self.cert_file is None:
            problems.append(_Problem(("cert_file",), "required when key_file is set"))
        if not self.tls:
            for name in ("ca_file", "cert_file", "key_file"):
                value = getattr(self, name)
                if value is not None:
                    problems.append(_Problem((name,), "set but tls = false", str(value)))
        if self.protocol == "3.1.1" and self.password is not None and self.username is None:
            problems.append(_Problem(("username",), "required with a password in MQTT 3.1.1"))
        if problems:
            raise _Problems(problems)
        return self


class Policies(_Section):
    hold_period_h: float = Field(default=72, gt=0, le=24 * 60)
    """How long a delivered parcel waits for pickup before it expires."""
    reservation_ttl_h: float = Field(default=24, gt=0)
    """How long a reserved compartment waits for the courier's deposit."""
    lock_pulse_ms: int = Field(default=500, ge=50, le=2000)
    """Relay on-time per unlock; capped at 2 s because a lock coil must never stay energised."""
    max_simultaneous_unlocks: int = Field(default=1, ge=1, le=8)
    """Locks pulsed at once; limited by what the lock power supply can deliver."""
    unlock_gap_ms: int = Field(default=200, ge=0, le=5000)
    door_open_timeout_s: float = Field(default=10, gt=0)
    """How long after a pulse the door may take to open before it is called jammed."""
    door_left_open_alarm_s: float = Field(default=120, gt=0)
    min_code_length: int = Field(default=8, ge=4, le=32)
    """Shortest pickup, return or courier code accepted from the cloud. Together with the
    lockout rate below it sets how long guessing takes (docs/security.md): lower it only
    with a lower ``lockout_locker_per_hour``."""
    lockout_free_attempts: int = Field(default=3, ge=1, le=20)
    """Wrong codes in a row one input (keypad, scanner, kiosk) may make before it must wait."""
    lockout_first_delay_s: float = Field(default=30, gt=0, le=3600)
    """The wait after the first wrong code beyond the free ones; it doubles with each next."""
    lockout_max_delay_s: float = Field(default=900, gt=0, le=86400)
    lockout_input_quiet_s: float = Field(default=3600, gt=0, le=7 * 86400)
    """An input with no wrong code for this long starts afresh (the locker-wide limit stays)."""
    lockout_locker_burst: int = Field(default=30, ge=1, le=1000)
    """Wrong customer codes the whole locker absorbs before the hourly rate applies."""
    lockout_locker_per_hour: float = Field(default=20, gt=0, le=1000)
    """Sustained wrong customer codes per hour, all inputs together: the bound on an attacker."""
    courier_lockout_locker_burst: int = Field(default=10, ge=1, le=1000)
    courier_lockout_locker_per_hour: float = Field(default=6, gt=0, le=1000)
    """Courier codes are their own namespace with their own, stricter, locker-wide limit."""
    courier_session_idle_s: float = Field(default=300, gt=0, le=3600)
    """A courier's session at the kiosk ends after this long without a step."""
    telemetry_interval_s: float = Field(default=300, ge=10)
    remote_open_limit: int = Field(default=6, ge=0, le=100)
    """Doors the network may open (``open``, ``remote_pickup``) within remote_open_window_s;
    one more raises an alarm and locks remote opening until an operator clears it."""
    remote_open_window_s: float = Field(default=300, gt=0, le=86400)


class TokensConfig(_Section):
    """Signed QR codes (docs/tokens.md), checked at the locker with no network."""

    public_keys: list[Annotated[str, StringConstraints(min_length=1)]] = []
    """Ed25519 keys (base64 of 32 bytes, or PEM files) the cloud signs tokens with; several
    while a key is being rotated. Empty: signed tokens are refused."""
    max_courier_validity_h: float = Field(default=24, gt=0, le=24 * 31)
    """A courier token valid for longer than this is refused."""


class RetentionConfig(_Section):
    """How long the database keeps what it no longer needs (bounded disk on an SD card)."""

    published_events_days: int = Field(default=14, ge=1, le=3650)
    """Days an event is kept in the outbox after the cloud acknowledged it (never unpublished
    ones: those stay until published or dropped by the outbox bound)."""
    audit_days: int = Field(default=90, ge=1, le=3650)
    """Days of the locker's own audit trail."""
    finished_assignments_days: int = Field(default=90, ge=1, le=3650)
    """Days a finished parcel or return (and its dead codes) is remembered after it ended."""
    inbox_days: int = Field(default=8, ge=1, le=3650)
    """Days a command id is remembered for at-most-once (keep above command_horizon_h)."""
    vacuum_interval_h: int = Field(default=168, ge=1, le=720)
    """Hours between full VACUUMs that give freed space back to the file system."""


class ApiConfig(_Section):
    """The local HTTP API and the kiosk page (served by uvicorn inside the agent)."""

    enabled: bool = False
    """Off unless the config asks: a locker listens on no port it was not told to."""
    host: str = Field(default="127.0.0.1", min_length=1)
    """Address to listen on; the kiosk browser runs on the same board."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests)."""
    max_body_bytes: int = Field(default=4096, ge=512, le=1_048_576)
    """Largest request body accepted; anything bigger gets 413."""
    screen_timeout_s: float = Field(default=60.0, ge=5, le=3600)
    """Idle seconds before the kiosk page goes back to its start screen."""


class CompartmentConfig(_Section):
    id: CompartmentId
    size: str
    """One of :attr:`AgentConfig.sizes`; checked there, where the list is known."""
    accessible: bool = False
    """Within reach from a wheelchair."""
    lock: HardwareAddress = None
    sensor: HardwareAddress = None
    """Door sensor; on rs485 it defaults to the lock's own channel."""
    label: str | None = Field(default=None, min_length=1, validate_default=True)
    """What a customer reads on the door; defaults to ``id``, so never None once validated."""
    row: int | None = Field(default=None, ge=1)
    """1 = top row."""
    column: int | None = Field(default=None, ge=1)
    """1 = leftmost column."""

    @field_validator("label")
    @classmethod
    def _label_defaults_to_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            compartment_id: str | None = info.data.get("id")
            return compartment_id
        return value


# --- the whole configuration ---------------------------------------------------------------


class AgentConfig(BaseSettings):
    """Everything the agent needs to know about this locker."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    locker_id: LockerId
    """Names this locker in MQTT topics."""
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = (
        "INFO"
    )
    log_format: Literal["keyvalue", "json"] = "keyvalue"
    sizes: list[SizeName] = Field(default_factory=lambda: list(DEFAULT_SIZES), min_length=1)
    """Compartment sizes, smallest first."""
    hardware: HardwareConfig
    mqtt: MqttConfig = MqttConfig()
    policies: Policies = Policies()
    retention: RetentionConfig = RetentionConfig()
    tokens: TokensConfig = TokensConfig()
    api: ApiConfig = ApiConfig()
    compartments: list[CompartmentConfig] = Field(min_length=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, so it beats the file (passed in as init values)."""
        return env_settings, init_settings

    @field_validator("sizes")
    @classmethod
    def _check_sizes_unique(cls, sizes: list[str]) -> list[str]:
        duplicates = sorted({size for size in sizes if sizes.count(size) > 1})
        if duplicates:
            raise ValueError(f"lists {', '.join(duplicates)} more than once")
        return sizes

    @field_validator("compartments")
    @classmethod
    def _check_compartments(
        cls, compartments: list[CompartmentConfig], info: ValidationInfo
    ) -> list[CompartmentConfig]:
        """Check what needs the other sections: sizes, ids, and wiring for the backend.

        A field validator rather than a model validator so these problems are reported
        together with any elsewhere in the file; ``sizes``/``hardware`` are skipped here
        when they are themselves invalid.
        """
        problems: list[_Problem] = []
        _check_unique_ids(compartments, problems)
        sizes: list[str] | None = info.data.get("sizes")
        if sizes is not None:
            for index, compartment in enumerate(compartments):
                if compartment.size not in sizes:
                    message = f"must be one of {', '.join(sizes)}"
                    problems.append(_Problem((index, "size"), message, compartment.size))
        hardware: HardwareConfig | None = info.data.get("hardware")
        if hardware is not None and hardware.backend == "gpio":
            _check_gpio_wiring(compartments, problems)
        elif hardware is not None and hardware.backend == "rs485":
            compartments = _check_rs485_wiring(compartments, problems)
        if problems:
            raise _Problems(problems)
        return compartments

    def compartment(self, compartment_id: str) -> CompartmentConfig:
        """The compartment with this id; KeyError if there is none."""
        for compartment in self.compartments:
            if compartment.id == compartment_id:
                return compartment
        raise KeyError(compartment_id)

    @property
    def database_path(self) -> Path:
        return self.state_dir / "locker.db"

    @property
    def secret_path(self) -> Path:
        """Key for hashing pickup codes; lives beside the database, never in the config."""
        return self.state_dir / "locker.secret"

    @property
    def mqtt_client_id(self) -> str:
        return self.mqtt.client_id or f"locker-{self.locker_id}"

    @model_validator(mode="after")
    def _check_inbox_outlives_commands(self) -> AgentConfig:
        """A command id forgotten while the command is still valid could be applied twice."""
        if self.retention.inbox_days * 24 < self.mqtt.command_horizon_h:
            raise _Problems([_Problem(
                ("retention", "inbox_days"),
                f"must cover mqtt.command_horizon_h ({self.mqtt.command_horizon_h:g} h), or a "
                "redelivered command could be applied twice",
                self.retention.inbox_days,
            )])
        return self


def _check_unique_ids(compartments: list[CompartmentConfig], problems: list[_Problem]) -> None:
    first_index: dict[str, int] = {}
    for index, compartment in enumerate(compartments):
        if compartment.id in first_index:
            message = f"duplicate of compartments[{first_index[compartment.id]}].id"
            problems.append(_Problem((index, "id"), message, compartment.id))
        else:
            first_index[compartment.id] = index


def _check_gpio_wiring(compartments: list[CompartmentConfig], problems: list[_Problem]) -> None:
    """Every compartment needs its own lock pin and its own sensor pin."""
    used: dict[int, tuple[int, str]] = {}
    for index, compartment in enumerate(compartments):
        for role, pin in (("lock", compartment.lock), ("sensor", compartment.sensor)):
            loc = (index, role)
            if pin is None:
                problems.append(_Problem(loc, 'required when hardware.backend = "gpio"'))
            elif not isinstance(pin, int) or pin not in BCM_PINS:
                message = f"must be a BCM GPIO number {BCM_PINS[0]}-{BCM_PINS[-1]}"
                problems.append(_Problem(loc, message, pin))
            elif pin in used:
                other, other_role = used[pin]
                message = (
                    f"GPIO {pin} is already the {other_role} pin of "
                    f"compartments[{other}] ({compartments[other].id})"
                )
                problems.append(_Problem(loc, message, pin))
            else:
                used[pin] = (index, role)


def _check_rs485_wiring(
    compartments: list[CompartmentConfig], problems: list[_Problem]
) -> list[CompartmentConfig]:
    """Every compartment needs its own lock channel; its sensor defaults to that channel.

    Returns the compartments with ``sensor`` filled in where it defaulted.
    """
    owners: dict[tuple[str, int, int], int] = {}  # (role, board, channel) -> compartment index

    def claim(index: int, role: str, channel: tuple[int, int], shown: object) -> bool:
        """Record the use of ``channel``; report it and return False if it is already taken."""
        other = owners.setdefault((role, *channel), index)
        if other != index:
            message = (
                f"channel {channel[0]}:{channel[1]} is already the {role} of "
                f"compartments[{other}] ({compartments[other].id})"
            )
            problems.append(_Problem((index, role), message, shown))
        return other == index

    result: list[CompartmentConfig] = []
    for index, compartment in enumerate(compartments):
        if compartment.lock is None:
            problems.append(_Problem((index, "lock"), 'required when hardware.backend = "rs485"'))
            lock = None
        else:
            lock = _parse_rs485_address(compartment.lock, (index, "lock"), problems)
        lock_ok = lock is not None and claim(index, "lock", lock, compartment.lock)
        if compartment.sensor is not None:
            sensor = _parse_rs485_address(compartment.sensor, (index, "sensor"), problems)
            if sensor is not None:
                claim(index, "sensor", sensor, compartment.sensor)
        else:
            if lock is not None and lock_ok:  # a clashing lock is one mistake, one message
                claim(index, "sensor", lock, _UNSET)
            if compartment.lock is not None:
                compartment = compartment.model_copy(update={"sensor": compartment.lock})
        result.append(compartment)
    return result


def _parse_rs485_address(
    value: int | str, loc: tuple[str | int, ...], problems: list[_Problem]
) -> tuple[int, int] | None:
    if not isinstance(value, str):
        problems.append(_Problem(loc, 'must be a string "BOARD:CHANNEL", e.g. "0:1"', value))
        return None
    try:
        return parse_board_channel(value)
    except ValueError as exc:
        problems.append(_Problem(loc, str(exc), value))
        return None


# --- loading -------------------------------------------------------------------------------


def default_config_path() -> Path:
    """``$LOCKER_AGENT_CONFIG`` if set, else the packaged location under /etc."""
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | Path) -> AgentConfig:
    """Read, parse and validate the config file, applying environment overrides.

    Raises :class:`ConfigError` if the file is missing or unreadable, is not valid TOML,
    or does not validate; the error lists every problem found.
    """
    path = Path(path)
    data = _read_toml(path)
    try:
        return AgentConfig(**data)
    except ValidationError as exc:
        # ``from None``: the chained pydantic error would carry raw inputs (passwords) into logs.
        raise ConfigError(path, _describe_errors(exc)) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON
        raise ConfigError(path, [f"environment: {exc}"]) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(path, ["is a directory, not a config file"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text (bad byte at offset {exc.start})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [_describe_toml_error(exc)]) from None


def _describe_toml_error(exc: tomllib.TOMLDecodeError) -> str:
    # Python 3.11's tomllib puts the position only in the message: "... (at line 3, column 7)".
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc), re.DOTALL)
    if match is None:
        return f"TOML syntax error: {exc}"
    return f"line {match[2]}, column {match[3]}: TOML syntax error: {match[1]}"


def _describe_errors(exc: ValidationError) -> list[str]:
    env_keys = _env_keys()
    lines = []
    for error in exc.errors():
        context = error.get("ctx", {}).get("error")
        if isinstance(context, _Problems):
            found = [(error["loc"] + p.loc, p.value, p.message) for p in context.problems]
        else:
            value = _UNSET if error["type"] in ("missing", "extra_forbidden") else error["input"]
            found = [(error["loc"], value, _human_message(error))]
        for loc, value, message in found:
            line = _describe(loc, value, message)
            env_name = _env_source(loc, env_keys)
            lines.append(f"{line} (from environment {env_name})" if env_name else line)
    return lines


def _describe(loc: tuple[str | int, ...], value: object, message: str) -> str:
    where = _format_loc(loc)
    secret = any(part in _SECRET_KEYS for part in loc if isinstance(part, str))
    if value is _UNSET or secret or not _is_plain(value):
        return f"{where}: {message}"
    shown = _toml_repr(value)
    if len(shown) > _MAX_VALUE_CHARS:
        shown = shown[: _MAX_VALUE_CHARS - 3] + "..."
    return f"{where} = {shown}: {message}"


def _toml_repr(value: object) -> str:
    """Show a value as it would be written in the file: ``true``, not ``True``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_repr(item) for item in value) + "]"
    return repr(str(value) if isinstance(value, Path) else value)


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _is_plain(value: object) -> bool:
    """Worth showing: scalars and lists of them, not whole tables (which may hold secrets)."""
    if isinstance(value, dict | BaseModel | SecretStr):
        return False
    if isinstance(value, list | tuple):
        return all(_is_plain(item) for item in value)
    return True


def _human_message(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key_message(error["loc"])
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a table"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    # "Input should be less than or equal to 2000" -> "must be less than or equal to 2000"
    return re.sub(r"^\w+ should ", "must ", error["msg"])


def _unknown_key_message(loc: tuple[str | int, ...]) -> str:
    key = loc[-1]
    known = _known_keys(loc[:-1])
    close = difflib.get_close_matches(str(key), known, n=1) if known else []
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _known_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed in the table at ``loc``, for suggesting a fix to a typo."""
    model: type[BaseModel] | None = AgentConfig
    for part in loc:
        if model is None:
            return []
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    if get_origin(annotation) is None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return None
    for arg in get_args(annotation):
        model = _model_in(arg)
        if model is not None:
            return model
    return None


def _env_keys() -> dict[tuple[str, ...], str]:
    """Key paths set by ``LOCKER_AGENT_*`` variables, mapped to the variable's name."""
    keys = {}
    for name in os.environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper != CONFIG_PATH_ENV:
            keys[tuple(upper[len(ENV_PREFIX) :].lower().split("__"))] = name
    return keys


def _env_source(loc: tuple[str | int, ...], env_keys: dict[tuple[str, ...], str]) -> str | None:
    for key, name in env_keys.items():
        if tuple(str(part).lower() for part in loc[: len(key)]) == key:
            return name
    return None
