"""The whole configuration, and the checks that need several sections at once (wiring)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from locker_agent.config.api import ApiConfig
from locker_agent.config.compartments import CompartmentConfig
from locker_agent.config.fields import (
    BCM_PINS,
    MODBUS_ADDRESS_FORM,
    RS485_ADDRESS_FORM,
    LockerId,
    SizeName,
    parse_board_channel,
    parse_unit_channel,
    upper,
)
from locker_agent.config.hardware import HardwareConfig
from locker_agent.config.mqtt import MqttConfig
from locker_agent.config.policies import Policies
from locker_agent.config.problems import UNSET, Problem, Problems
from locker_agent.config.retention import RetentionConfig
from locker_agent.config.security import SecurityConfig
from locker_agent.config.tokens import TokensConfig
from locker_agent.contract.topics import REPLY_INBOX_LEVEL
from locker_agent.domain.model import DEFAULT_SIZES

ENV_PREFIX: Final = "LOCKER_AGENT_"
CONFIG_PATH_ENV: Final = "LOCKER_AGENT_CONFIG"
DEFAULT_CONFIG_PATH: Final = Path("/etc/locker-agent/locker-agent.toml")
DEFAULT_STATE_DIR: Final = Path("/var/lib/locker-agent")


class AgentConfig(BaseModel):
    """Everything the agent needs to know about this locker.

    ``LOCKER_AGENT_*`` environment variables are laid over the file's values by
    :func:`~locker_agent.config.loading.load_config` before validation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    locker_id: LockerId
    """Names this locker in MQTT topics."""
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(upper)] = (
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
    security: SecurityConfig = SecurityConfig()
    compartments: list[CompartmentConfig] = Field(min_length=1)

    @field_validator("locker_id")
    @classmethod
    def _check_locker_id_not_reserved(cls, locker_id: str) -> str:
        if locker_id == REPLY_INBOX_LEVEL:
            raise ValueError(f"{REPLY_INBOX_LEVEL!r} is reserved for operators' reply inboxes")
        return locker_id

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
        problems: list[Problem] = []
        _check_unique_ids(compartments, problems)
        sizes: list[str] | None = info.data.get("sizes")
        if sizes is not None:
            for index, compartment in enumerate(compartments):
                if compartment.size not in sizes:
                    message = f"must be one of {', '.join(sizes)}"
                    problems.append(Problem((index, "size"), message, compartment.size))
        hardware: HardwareConfig | None = info.data.get("hardware")
        if hardware is not None and hardware.backend == "gpio":
            _check_gpio_wiring(compartments, problems)
        elif hardware is not None and hardware.backend == "rs485":
            compartments = _check_bus_wiring(
                compartments, problems, "rs485", parse_board_channel, RS485_ADDRESS_FORM
            )
        elif hardware is not None and hardware.backend == "modbus":
            compartments = _check_bus_wiring(
                compartments, problems, "modbus", parse_unit_channel, MODBUS_ADDRESS_FORM
            )
        if problems:
            raise Problems(problems)
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

    @property
    def operator_public_keys(self) -> list[str]:
        """Every operator key: ``[security] operator_public_keys`` and the older single
        ``mqtt.operator_public_key``."""
        keys = list(self.security.operator_public_keys)
        if self.mqtt.operator_public_key and self.mqtt.operator_public_key not in keys:
            keys.insert(0, self.mqtt.operator_public_key)
        return keys

    @property
    def sealed_codes_required(self) -> bool:
        required = self.security.require_sealed_codes
        return bool(self.operator_public_keys) if required is None else required

    def command_security_problems(self) -> list[str]:
        """Why this locker must not run as configured: anyone on the broker could command it."""
        if not self.mqtt.enabled or self.operator_public_keys:
            return []
        if self.security.allow_unsigned_commands:
            return []
        return [
            "security.operator_public_keys: the cloud link is on but no operator key is set, "
            "so anyone who can publish on the broker could command this locker; add the "
            "public key of `locker-ctl keygen` (or, on a closed test bench only, set "
            "security.allow_unsigned_commands = true)"
        ]

    @model_validator(mode="after")
    def _check_inbox_outlives_commands(self) -> AgentConfig:
        """A command id forgotten while the command is still valid could be applied twice."""
        if self.retention.inbox_days * 24 < self.mqtt.command_horizon_h:
            raise Problems([Problem(
                ("retention", "inbox_days"),
                f"must cover mqtt.command_horizon_h ({self.mqtt.command_horizon_h:g} h), or a "
                "redelivered command could be applied twice",
                self.retention.inbox_days,
            )])
        return self


def _check_unique_ids(compartments: list[CompartmentConfig], problems: list[Problem]) -> None:
    first_index: dict[str, int] = {}
    for index, compartment in enumerate(compartments):
        if compartment.id in first_index:
            message = f"duplicate of compartments[{first_index[compartment.id]}].id"
            problems.append(Problem((index, "id"), message, compartment.id))
        else:
            first_index[compartment.id] = index


def _check_gpio_wiring(compartments: list[CompartmentConfig], problems: list[Problem]) -> None:
    """Every compartment needs its own lock pin and its own sensor pin."""
    used: dict[int, tuple[int, str]] = {}
    for index, compartment in enumerate(compartments):
        for role, pin in (("lock", compartment.lock), ("sensor", compartment.sensor)):
            loc = (index, role)
            if pin is None:
                problems.append(Problem(loc, 'required when hardware.backend = "gpio"'))
            elif not isinstance(pin, int) or pin not in BCM_PINS:
                message = f"must be a BCM GPIO number {BCM_PINS[0]}-{BCM_PINS[-1]}"
                problems.append(Problem(loc, message, pin))
            elif pin in used:
                other, other_role = used[pin]
                message = (
                    f"GPIO {pin} is already the {other_role} pin of "
                    f"compartments[{other}] ({compartments[other].id})"
                )
                problems.append(Problem(loc, message, pin))
            else:
                used[pin] = (index, role)


def _check_bus_wiring(
    compartments: list[CompartmentConfig],
    problems: list[Problem],
    backend: str,
    parse: Callable[[str], tuple[int, int]],
    form: str,
) -> list[CompartmentConfig]:
    """Every compartment needs its own lock channel; its sensor defaults to that channel.

    For the boards on a serial bus (rs485, modbus), whose addresses are ``"BOARD:CHANNEL"``
    strings read by ``parse``. Returns the compartments with ``sensor`` filled in where it
    defaulted.
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
            problems.append(Problem((index, role), message, shown))
        return other == index

    def address(value: int | str, loc: tuple[str | int, ...]) -> tuple[int, int] | None:
        if not isinstance(value, str):
            problems.append(Problem(loc, f"must be a string {form}", value))
            return None
        try:
            return parse(value)
        except ValueError as exc:
            problems.append(Problem(loc, str(exc), value))
            return None

    result: list[CompartmentConfig] = []
    for index, compartment in enumerate(compartments):
        if compartment.lock is None:
            problems.append(
                Problem((index, "lock"), f'required when hardware.backend = "{backend}"')
            )
            lock = None
        else:
            lock = address(compartment.lock, (index, "lock"))
        lock_ok = lock is not None and claim(index, "lock", lock, compartment.lock)
        if compartment.sensor is not None:
            sensor = address(compartment.sensor, (index, "sensor"))
            if sensor is not None:
                claim(index, "sensor", sensor, compartment.sensor)
        else:
            if lock is not None and lock_ok:  # a clashing lock is one mistake, one message
                claim(index, "sensor", lock, UNSET)
            if compartment.lock is not None:
                compartment = compartment.model_copy(update={"sensor": compartment.lock})
        result.append(compartment)
    return result
