"""The ``locker-agent`` command as an operator runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import BIN, REPO, ConfigWriter

AGENT = [str(BIN / "locker-agent")] if (BIN / "locker-agent").exists() else [
    sys.executable, "-m", "locker_agent.cli"
]


def agent_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_AGENT_")}
    env.update(extra)
    return env


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENT, *args], capture_output=True, text=True, env=agent_env(**env), timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_version() -> None:
    result = cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("locker-agent ")


def test_check_config_accepts_every_shipped_config() -> None:
    for name in ("simulated.toml", "example-gpio.toml", "example-rs485.toml",
                 "example-modbus.toml"):
        result = cli("check-config", str(REPO / "config" / name))
        assert result.returncode == 0, result.stderr
        assert "ok" in result.stdout


def test_a_bad_config_stops_with_file_key_value_and_reason_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (REPO / "config" / "simulated.toml").read_text().replace(
            "lock_pulse_ms = 500", "lock_pulse_ms = 5000"
        )
    )
    assert "lock_pulse_ms = 5000" in bad.read_text()
    for command in (["check-config", str(bad)], ["run", "--config", str(bad)]):
        result = cli(*command, LOCKER_AGENT_STATE_DIR=str(tmp_path / "state"))
        assert result.returncode == 2
        assert str(bad) in result.stderr
        assert "policies.lock_pulse_ms" in result.stderr
        assert "5000" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    result = cli("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_state_says_so(write_config: ConfigWriter) -> None:
    result = cli("status", "--config", str(write_config()))
    assert result.returncode == 1
    assert "no locker database in state_dir" in result.stderr


def test_run_then_status_lists_all_24_compartments_and_sigterm_stops_cleanly(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    env = agent_env(LOCKER_AGENT_STATE_DIR=str(state))
    process = subprocess.Popen(
        [*AGENT, "run", "--config", str(REPO / "config" / "simulated.toml"), "--demo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=env,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        for line in process.stdout:
            lines.append(line)
            if len([x for x in lines if x.startswith("  demo-")]) == 3:
                break
            assert time.monotonic() < deadline
        assert str(state) in lines[0]
        codes = [line.split()[-1] for line in lines if line.startswith("  demo-")]
        assert len(codes) == 3
        assert all(len(code) == 8 and code.isdigit() for code in codes)

        status = cli("status", "--config", str(REPO / "config" / "simulated.toml"),
                     LOCKER_AGENT_STATE_DIR=str(state))
        assert status.returncode == 0, status.stderr
        rows = [line for line in status.stdout.splitlines() if line and line[0] in "ABCD"]
        assert len(rows) == 24
        assert "3 occupied" in status.stdout

        as_json = cli("status", "--json", "--config", str(REPO / "config" / "simulated.toml"),
                      LOCKER_AGENT_STATE_DIR=str(state))
        document = json.loads(as_json.stdout)
        assert len(document["compartments"]) == 24
        assert document["counts"]["occupied"] == 3
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "stopping" in stderr
    assert "Traceback" not in stderr
    for code in codes:  # printed for the newcomer on stdout, never logged nor stored in clear
        assert code not in stderr
        for path in state.rglob("*"):
            if path.is_file():
                assert code.encode() not in path.read_bytes(), path
    secret = state / "locker.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
