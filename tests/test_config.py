"""The config module: shipped files load, the environment wins, and bad files say what is wrong."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from locker_agent.config import (
    DEFAULT_CONFIG_PATH,
    AgentConfig,
    ConfigError,
    default_config_path,
    load_config,
    parse_board_channel,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SHIPPED = ["simulated.toml", "example-gpio.toml", "example-rs485.toml", "example-modbus.toml"]

MINIMAL = """\
locker_id = "test-locker"

[hardware]
backend = "simulated"

[[compartments]]
id = "01"
size = "S"

[[compartments]]
id = "02"
size = "M"
"""

GPIO_TWO_DOORS = """\
locker_id = "gpio-test"

[hardware]
backend = "gpio"

[[compartments]]
id = "01"
size = "S"
lock = 4
sensor = 12

[[compartments]]
id = "02"
size = "S"
lock = 17
sensor = {sensor}
"""

RS485_TWO_DOORS = """\
locker_id = "rs485-test"

[hardware]
backend = "rs485"

[[compartments]]
id = "01"
size = "S"
lock = "0:16"

[[compartments]]
id = "02"
size = "S"
lock = {lock}
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LOCKER_AGENT_* variable from the shell or the Makefile leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("LOCKER_AGENT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "locker-agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


# --- shipped files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads(name: str) -> None:
    config = load_config(CONFIG_DIR / name)

    assert config.compartments
    assert {c.size for c in config.compartments} <= set(config.sizes)


def test_simulated_config_is_a_realistic_default() -> None:
    config = load_config(CONFIG_DIR / "simulated.toml")

    assert config.locker_id == "demo-locker-001"
    assert config.hardware.backend == "simulated"
    assert len(config.compartments) == 24
    assert all(c.row is not None and c.column is not None for c in config.compartments)
    sizes = [c.size for c in config.compartments]
    assert sizes.count("S") + sizes.count("M") > len(sizes) / 2
    assert any(c.accessible for c in config.compartments)
    assert config.mqtt.enabled and config.mqtt.host is None
    assert config.state_dir == Path("/var/lib/locker-agent")  # the Makefile overrides it


def test_gpio_example_wires_every_door_to_its_own_pins() -> None:
    config = load_config(CONFIG_DIR / "example-gpio.toml")

    assert config.hardware.backend == "gpio"
    pins = [c.lock for c in config.compartments] + [c.sensor for c in config.compartments]
    assert len(pins) == len(set(pins)) == 2 * len(config.compartments)


def test_rs485_example_defaults_sensors_to_the_lock_channel() -> None:
    config = load_config(CONFIG_DIR / "example-rs485.toml")

    assert config.hardware.backend == "rs485"
    assert len(config.compartments) == 24
    assert config.compartments[0].lock == "0:1"
    assert config.compartments[-1].lock == "1:8"
    assert all(c.sensor == c.lock for c in config.compartments)


def test_modbus_example_spells_out_every_key_at_its_default() -> None:
    from locker_agent.config import ModbusHardware

    config = load_config(CONFIG_DIR / "example-modbus.toml")
    text = (CONFIG_DIR / "example-modbus.toml").read_text()

    assert config.hardware.backend == "modbus"
    assert config.hardware.modbus == ModbusHardware()
    for key in ModbusHardware.model_fields:
        assert f"\n{key} = " in text, key
    assert [c.lock for c in config.compartments][::8] == ["1:1", "2:1"]
    assert all(c.sensor == c.lock for c in config.compartments)


# --- values and helpers --------------------------------------------------------------------


def test_defaults_and_helpers(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))

    assert config.sizes == ["S", "M", "L", "XL"]
    assert config.log_level == "INFO"
    assert config.policies.lock_pulse_ms == 500
    assert config.mqtt.port == 1883
    assert config.database_path == Path("/var/lib/locker-agent/locker.db")
    assert config.secret_path == Path("/var/lib/locker-agent/locker.secret")
    assert config.mqtt_client_id == "locker-test-locker"
    assert config.compartment("02").size == "M"
    assert config.compartment("02").label == "02"
    with pytest.raises(KeyError):
        config.compartment("99")


def test_lowercase_log_level_is_normalised(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'log_level = "debug"\n' + MINIMAL))

    assert config.log_level == "DEBUG"


def test_false_auto_close_means_never(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '[hardware]\nbackend = "simulated"\n',
        '[hardware]\nbackend = "simulated"\nsimulated.auto_close_after_s = false\n',
    )

    config = load_config(write(tmp_path, text))

    assert config.hardware.simulated.auto_close_after_s is None


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))

    with pytest.raises(ValueError):
        config.locker_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0:1", (0, 1)), ("9:16", (9, 16)), ("1:08", (1, 8))],
)
def test_parse_board_channel(text: str, expected: tuple[int, int]) -> None:
    assert parse_board_channel(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0:17", "channel must be 1-16"),
        ("0:0", "channel must be 1-16"),
        ("10:1", "board must be 0-9"),
        ("0-1", "BOARD:CHANNEL"),
        ("", "BOARD:CHANNEL"),
    ],
)
def test_parse_board_channel_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_board_channel(text)


def test_default_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        default_config_path() == DEFAULT_CONFIG_PATH == Path("/etc/locker-agent/locker-agent.toml")
    )
    monkeypatch.setenv("LOCKER_AGENT_CONFIG", "/tmp/elsewhere.toml")
    assert default_config_path() == Path("/tmp/elsewhere.toml")


# --- environment ---------------------------------------------------------------------------


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'log_level = "DEBUG"\nstate_dir = "/from/file"\n' + MINIMAL + "[mqtt]\nport = 1884\n"
    path = write(tmp_path, text)
    monkeypatch.setenv("LOCKER_AGENT_LOG_LEVEL", "error")
    monkeypatch.setenv("LOCKER_AGENT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LOCKER_AGENT_MQTT__HOST", "broker.internal")
    monkeypatch.setenv("LOCKER_AGENT_POLICIES__LOCK_PULSE_MS", "300")

    config = load_config(path)

    assert config.log_level == "ERROR"
    assert config.state_dir == tmp_path / "state"
    assert config.database_path == tmp_path / "state" / "locker.db"
    assert config.mqtt.host == "broker.internal"
    assert config.mqtt.port == 1884  # the rest of [mqtt] still comes from the file
    assert config.policies.lock_pulse_ms == 300


def test_environment_null_unsets_an_optional_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL + '[mqtt]\nhost = "from-file"\n')
    monkeypatch.setenv("LOCKER_AGENT_MQTT__HOST", "null")

    assert load_config(path).mqtt.host is None


def test_bad_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("LOCKER_AGENT_MQTT__PORT", "99999")

    message = str(config_error(path))

    assert "mqtt.port = '99999': must be less than or equal to 65535" in message
    assert "LOCKER_AGENT_MQTT__PORT" in message


def test_config_path_variable_is_not_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("LOCKER_AGENT_CONFIG", str(path))

    assert load_config(default_config_path()).locker_id == "test-locker"


# --- bad files -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    error = config_error(path)

    assert error.path == path
    assert str(error) == f"{path}: file not found"


def test_unreadable_file(tmp_path: Path) -> None:
    assert str(config_error(tmp_path)) == f"{tmp_path}: is a directory, not a config file"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'locker_id = "caf\xe9"\n')

    assert "not UTF-8" in str(config_error(path))


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'locker_id = "x"\n\n[hardware]\nbackend "gpio"\n')

    message = str(config_error(path))

    assert message.startswith(f"{path}: line 4, column 9: TOML syntax error: ")


# Each case: the file's text, then what the error must say (besides the file name).
BAD_FILES = {
    "unknown key": (
        MINIMAL + "[policies]\nlock_puls_ms = 300\n",
        "policies.lock_puls_ms: unknown key (did you mean 'lock_pulse_ms'?)",
    ),
    "unknown top-level table": (
        MINIMAL + "[polices]\nhold_period_h = 1\n",
        "polices: unknown key (did you mean 'policies'?)",
    ),
    "unknown compartment key": (
        MINIMAL.replace('id = "02"', 'id = "02"\nsise = "S"'),
        "compartments[1].sise: unknown key (did you mean 'size'?)",
    ),
    "wrong size": (
        MINIMAL.replace('size = "M"', 'size = "XXL"'),
        "compartments[1].size = 'XXL': must be one of S, M, L, XL",
    ),
    "duplicate compartment id": (
        MINIMAL.replace('id = "02"', 'id = "01"'),
        "compartments[1].id = '01': duplicate of compartments[0].id",
    ),
    "lock pulse too long": (
        MINIMAL + "[policies]\nlock_pulse_ms = 5000\n",
        "policies.lock_pulse_ms = 5000: must be less than or equal to 2000",
    ),
    "bad locker_id": (
        MINIMAL.replace('"test-locker"', '"locker/7"'),
        "locker_id = 'locker/7': must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
    ),
    "missing locker_id": (
        MINIMAL.replace('locker_id = "test-locker"\n', ""),
        "locker_id: required key is missing",
    ),
    "missing hardware": (
        MINIMAL.replace('[hardware]\nbackend = "simulated"\n', ""),
        "hardware: required key is missing",
    ),
    "empty compartments": (
        'locker_id = "x"\ncompartments = []\n[hardware]\n',
        "compartments = []: must not be empty",
    ),
    "bad log level": (
        'log_level = "verbose"\n' + MINIMAL,
        "log_level = 'VERBOSE': must be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
    ),
    "duplicate size": (
        'sizes = ["S", "M", "S"]\n' + MINIMAL,
        "sizes = ['S', 'M', 'S']: lists S more than once",
    ),
    "topic wildcard": (
        MINIMAL + '[mqtt]\ntopic_prefix = "lockers/#"\n',
        "mqtt.topic_prefix = 'lockers/#': must not contain the MQTT wildcards",
    ),
    "client cert without key": (
        MINIMAL + '[mqtt]\ntls = true\ncert_file = "/etc/c.pem"\n',
        "mqtt.key_file: required when cert_file is set",
    ),
    "gpio lock pin clash": (
        GPIO_TWO_DOORS.format(sensor=16).replace("lock = 17", "lock = 4"),
        "compartments[1].lock = 4: GPIO 4 is already the lock pin of compartments[0] (01)",
    ),
    "gpio pin both lock and sensor": (
        GPIO_TWO_DOORS.format(sensor=4),
        "compartments[1].sensor = 4: GPIO 4 is already the lock pin of compartments[0] (01)",
    ),
    "gpio pin out of range": (
        GPIO_TWO_DOORS.format(sensor=28),
        "compartments[1].sensor = 28: must be a BCM GPIO number 0-27",
    ),
    "gpio sensor missing": (
        GPIO_TWO_DOORS.format(sensor=16).replace("sensor = 16\n", ""),
        'compartments[1].sensor: required when hardware.backend = "gpio"',
    ),
    "rs485 channel out of range": (
        RS485_TWO_DOORS.format(lock='"0:17"'),
        "compartments[1].lock = '0:17': channel must be 1-16, not 17",
    ),
    "rs485 channel clash": (
        RS485_TWO_DOORS.format(lock='"0:16"'),
        "compartments[1].lock = '0:16': channel 0:16 is already the lock of compartments[0] (01)",
    ),
    "rs485 pin number instead of channel": (
        RS485_TWO_DOORS.format(lock="3"),
        'compartments[1].lock = 3: must be a string "BOARD:CHANNEL"',
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_names_file_key_and_reason(tmp_path: Path, case: str) -> None:
    text, expected = BAD_FILES[case]
    path = write(tmp_path, text)

    error = config_error(path)

    lines = str(error).splitlines()
    assert any(line.startswith(f"{path}: {expected}") for line in lines), str(error)
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert error.problems and error.path == path


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace('size = "M"', 'size = "XXL"') + "[mqtt]\nport = 0\n"
    path = write(tmp_path, text)

    problems = config_error(path).problems

    assert problems == [
        "mqtt.port = 0: must be greater than or equal to 1",
        "compartments[1].size = 'XXL': must be one of S, M, L, XL",
    ]


def test_one_clashing_rs485_lock_is_one_problem(tmp_path: Path) -> None:
    path = write(tmp_path, RS485_TWO_DOORS.format(lock='"0:16"'))

    assert len(config_error(path).problems) == 1


def test_long_values_are_truncated(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('"test-locker"', '"' + "x" * 200 + '"'))

    (problem,) = config_error(path).problems

    value = problem.split(" = ", 1)[1].split(": ", 1)[0]
    assert len(value) <= 60 and value.endswith("...")


SECRET = "s3cr3t-Pa55w0rd"


@pytest.mark.parametrize(
    "mqtt_table",
    [
        f'password = "{SECRET}"\nport = 0\n',  # an error beside the password
        f'password = "{SECRET}"\ncert_file = "/c.pem"\n',  # an error in the same table
        f'passwrod = "{SECRET}"\n',  # a typo in the key itself
        "password = 123456789\n",  # a password of the wrong type
    ],
)
def test_password_never_appears_in_errors(tmp_path: Path, mqtt_table: str) -> None:
    path = write(tmp_path, MINIMAL + "[mqtt]\n" + mqtt_table)

    error = config_error(path)

    text = f"{error}\n{error!r}\n{error.__cause__!r}\n{error.__context__!r}"
    assert SECRET not in text
    assert "123456789" not in text
    assert error.__cause__ is None and error.__suppress_context__


def test_password_from_environment_is_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKER_AGENT_MQTT__PASSWORD", SECRET)

    config = load_config(write(tmp_path, MINIMAL))

    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValueError, match="must be one of S, M"):
        AgentConfig(
            locker_id="x",
            hardware={"backend": "simulated"},
            compartments=[{"id": "01", "size": "XXL"}],
        )


def test_the_inbox_must_outlive_the_command_horizon(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "simulated.toml").read_text().replace("inbox_days = 8", "inbox_days = 2")
    bad = tmp_path / "short-inbox.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "retention.inbox_days" in str(info.value)
    assert "command_horizon_h" in str(info.value)
