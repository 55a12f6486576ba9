"""The agent's configuration: one TOML file, validated, with environment overrides.

:func:`load_config` reads the file with :mod:`tomllib` and validates it into an
:class:`AgentConfig`. Environment variables named ``LOCKER_AGENT_<KEY>`` (nested keys joined
by ``__``, e.g. ``LOCKER_AGENT_MQTT__HOST``) override the file; set one to ``null`` to unset
an optional key. Every problem is reported as a :class:`ConfigError` whose lines name the
file, the key, the offending value and the reason, so a typo on a locker in the field is
found from one log line.
"""

from __future__ import annotations

from locker_agent.config.agent import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIR,
    ENV_PREFIX,
    AgentConfig,
)
from locker_agent.config.api import ApiConfig
from locker_agent.config.compartments import CompartmentConfig
from locker_agent.config.fields import (
    BCM_PINS,
    MODBUS_CHANNELS,
    MODBUS_UNITS,
    RS485_BOARDS,
    RS485_CHANNELS,
    parse_board_channel,
    parse_unit_channel,
)
from locker_agent.config.hardware import (
    KEYPAD_LAYOUTS,
    GpioHardware,
    HardwareConfig,
    KeypadHardware,
    ModbusHardware,
    Rs485Hardware,
    ScannerHardware,
    SimulatedHardware,
)
from locker_agent.config.loading import default_config_path, load_config
from locker_agent.config.mqtt import MqttConfig
from locker_agent.config.policies import Policies
from locker_agent.config.problems import ConfigError
from locker_agent.config.retention import RetentionConfig
from locker_agent.config.security import SecurityConfig
from locker_agent.config.tokens import TokensConfig

__all__ = [
    "BCM_PINS",
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "ENV_PREFIX",
    "KEYPAD_LAYOUTS",
    "MODBUS_CHANNELS",
    "MODBUS_UNITS",
    "RS485_BOARDS",
    "RS485_CHANNELS",
    "AgentConfig",
    "ApiConfig",
    "CompartmentConfig",
    "ConfigError",
    "GpioHardware",
    "HardwareConfig",
    "KeypadHardware",
    "ModbusHardware",
    "MqttConfig",
    "Policies",
    "RetentionConfig",
    "Rs485Hardware",
    "ScannerHardware",
    "SecurityConfig",
    "SimulatedHardware",
    "TokensConfig",
    "default_config_path",
    "load_config",
    "parse_board_channel",
    "parse_unit_channel",
]
