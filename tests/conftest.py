"""Fixtures shared across the suite: real config files and state directories in tmp_path."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.operator import OPERATOR_PUBLIC, STATE_DIRS

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

SMALL_LOCKER = """\
locker_id = "test-locker"
state_dir = "{state_dir}"

[hardware]
backend = "simulated"

[hardware.simulated]
auto_open_on_unlock = {auto_open}
auto_close_after_s = {auto_close}
console = false

{mqtt}

{policies}

{security}

[[compartments]]
id = "A01"
size = "S"

[[compartments]]
id = "A02"
size = "S"

[[compartments]]
id = "A03"
size = "S"

[[compartments]]
id = "A04"
size = "M"

[[compartments]]
id = "A05"
size = "L"
accessible = true

[[compartments]]
id = "A06"
size = "XL"
accessible = true
"""

ConfigWriter = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """Write a small simulated locker's config; keyword arguments tune it."""

    def write(
        *,
        state_dir: Path | None = None,
        auto_open: bool = True,
        auto_close: float | bool = False,
        door_open_timeout: float = 10,
        max_simultaneous: int = 1,
        name: str = "locker.toml",
        mqtt: dict[str, object] | None = None,
        policies: dict[str, object] | None = None,
        locker_id: str = "test-locker",
        security: dict[str, object] | None = None,
    ) -> Path:
        path = tmp_path / name
        state = state_dir or tmp_path / "state"
        STATE_DIRS[locker_id] = state
        trusted: dict[str, object] = {"wall_clock": "trusted"}
        if mqtt is not None:
            trusted["operator_public_keys"] = [OPERATOR_PUBLIC]
        path.write_text(
            SMALL_LOCKER.format(
                state_dir=state,
                auto_open=str(auto_open).lower(),
                auto_close=str(auto_close).lower(),
                mqtt=_toml_table("mqtt", {"enabled": False} if mqtt is None else mqtt),
                policies=_toml_table(
                    "policies",
                    {
                        "lock_pulse_ms": 50,
                        "unlock_gap_ms": 0,
                        "door_open_timeout_s": door_open_timeout,
                        "max_simultaneous_unlocks": max_simultaneous,
                        **(policies or {}),
                    },
                ),
                security=_toml_table("security", {**trusted, **(security or {})}),
            ).replace('locker_id = "test-locker"', f'locker_id = "{locker_id}"')
        )
        return path

    return write


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_table(name: str, values: dict[str, object]) -> str:
    lines = [f"[{name}]"] + [f"{key} = {_toml_value(v)}" for key, v in values.items()]
    return "\n".join(lines)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LOCKER_AGENT_* variable from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("LOCKER_AGENT_"):
            monkeypatch.delenv(key)
