"""Config files for the lockers the benchmarks run, written like an installer would.

Each locker trusts the bench operator's key, and the bench's cloud client signs every
command and seals every code to the locker's identity key, as a production back end must:
the figures include that cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from locker_agent.contract.sealing import load_locker_key
from locker_agent.contract.signing import public_key_base64
from locker_agent.ctl.client import ConnectionOptions, FleetClient

OPERATOR_KEY = Ed25519PrivateKey.generate()
STATE_DIRS: dict[str, Path] = {}

GPIO_PAIRS = 12
"""Compartments a MockFactory board can carry: a relay pin and a reed pin each, GPIO 2-25."""


def _value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _table(name: str, values: Mapping[str, object]) -> str:
    return "\n".join([f"[{name}]", *(f"{k} = {_value(v)}" for k, v in values.items())])


def write_locker_config(
    path: Path,
    *,
    locker_id: str,
    state_dir: Path,
    backend: str = "simulated",
    compartments: int = 24,
    broker: tuple[str, int] | None = None,
    mqtt: Mapping[str, object] | None = None,
    policies: Mapping[str, object] | None = None,
    auto_close_after_s: float | None = None,
    auto_open_on_unlock: bool = False,
    api: bool = False,
) -> Path:
    """A locker of ``compartments`` S/M/L compartments; MQTT to ``broker`` or switched off."""
    sections = [
        f"locker_id = {_value(locker_id)}",
        f"state_dir = {_value(str(state_dir))}",
        'log_level = "WARNING"',
        "",
        _table("hardware", {"backend": backend}),
    ]
    if backend == "simulated":
        sections.append(_table("hardware.simulated", {
            "auto_open_on_unlock": auto_open_on_unlock,
            "auto_close_after_s": auto_close_after_s if auto_close_after_s else False,
            "console": False,
        }))
    elif backend == "gpio":
        sections.append(_table("hardware.gpio", {
            "pin_factory": "mock", "door_debounce_ms": 0, "door_closed_when": "low",
        }))
        compartments = min(compartments, GPIO_PAIRS)
    mqtt_values: dict[str, object] = {"enabled": broker is not None}
    if broker is not None:
        mqtt_values.update({"host": broker[0], "port": broker[1]})
    mqtt_values.update(mqtt or {})
    sections.append(_table("mqtt", mqtt_values))
    sections.append(_table("api", {"enabled": api, "port": 0}))
    sections.append(f'[security]\noperator_public_keys = ["{public_key_base64(OPERATOR_KEY)}"]'
                    '\nwall_clock = "trusted"')
    STATE_DIRS[locker_id] = state_dir
    sections.append(_table("policies", {
        "lock_pulse_ms": 50, "unlock_gap_ms": 0, **(policies or {}),
    }))
    sizes = ("S", "M", "L")
    for index in range(compartments):
        entry: dict[str, object] = {"id": f"C{index + 1:03d}", "size": sizes[index % 3]}
        if backend == "gpio":
            entry.update({"lock": 2 + 2 * index, "sensor": 3 + 2 * index})
        sections.append(_table("[compartments]", entry))  # an array of tables
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sections) + "\n")
    return path


def locker_key(locker_id: str) -> X25519PublicKey | None:
    """A bench locker's identity key, once it has started and written it."""
    try:
        document = json.loads((STATE_DIRS[locker_id] / "identity.pub").read_text())
    except (KeyError, OSError, ValueError):
        return None
    return load_locker_key(document["public_key"])


def operator_client(host: str, port: int) -> FleetClient:
    """The bench's cloud: signing as the bench operator, sealing codes to the bench lockers."""
    client = FleetClient(ConnectionOptions(host=host, port=port))
    client.signing_key = OPERATOR_KEY
    client.locker_keys = locker_key
    return client
