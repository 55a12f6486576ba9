"""The systemd unit: valid for systemd-analyze, and the promises it makes are in it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO

UNIT = REPO / "systemd" / "locker-agent.service"


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (make test does)")
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)


def installed_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit as installed, pointing at this checkout's locker-agent (verify checks it)."""
    text = text if text is not None else UNIT.read_text()
    copy = tmp_path / "locker-agent.service"
    copy.write_text(text.replace("/opt/locker-agent/.venv/bin/locker-agent",
                                 str(BIN / "locker-agent")))
    return copy


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    result = verify(installed_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The control: the check above is not blind."""
    broken = UNIT.read_text().replace("Type=notify", "Type=notifyy")
    result = verify(installed_copy(tmp_path, broken))
    assert "notifyy" in result.stderr


def settings() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_the_unit_makes_the_promises_of_the_docs() -> None:
    unit = settings()
    assert unit["Type"] == ["notify"]
    assert int(unit["WatchdogSec"][0]) > 0
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # a bad config is not restarted in a loop
    assert unit["StateDirectory"] == ["locker-agent"]
    assert unit["User"] == ["locker-agent"]
    assert set(unit["SupplementaryGroups"][0].split()) == {"gpio", "dialout"}
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert unit[key] == ["strict" if key == "ProtectSystem" else "yes"], key
    assert "@system-service" in unit["SystemCallFilter"]
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # hardening that still reaches the lock hardware
    devices = {d.split()[0] for d in unit["DeviceAllow"]}
    assert {"char-gpiochip", "char-ttyUSB", "char-ttyAMA"} <= devices
    assert unit.get("PrivateDevices", ["no"]) == ["no"]
    assert "--no-console" in unit["ExecStart"][0]


def test_the_install_script_does_what_it_says(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh"), "--dry-run"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    steps = result.stdout
    assert "useradd --system" in steps and "gpio,dialout" in steps
    assert "/etc/locker-agent/locker-agent.toml" in steps
    assert "check-config" in steps
    assert "systemctl enable --now locker-agent.service" in steps
