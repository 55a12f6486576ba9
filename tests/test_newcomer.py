"""A newcomer's first hour (issue 17): busy ports, finding the demo broker, messages that
point at the real cause, the demo's courier code, and a clean stop that is not a warning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import BIN, REPO, ConfigWriter
from tests.support.demo_agent import demo_agent


@contextmanager
def held_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield squatter.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_AGENT_")}
    return env | extra


def warnings_while_stopping(log: str) -> list[str]:
    """The WARNING (or worse) lines the agent logged from the moment it began to stop."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if "msg=stopping" in line), len(lines))
    assert start < len(lines), "the agent never logged that it was stopping"
    return [line for line in lines[start:]
            if any(f"level={level}" in line for level in ("WARNING", "ERROR", "CRITICAL"))]


def test_the_demo_takes_the_next_free_port_and_prints_a_courier_code(tmp_path: Path) -> None:
    with held_port() as busy, demo_agent(
        tmp_path / "state", env={"LOCKER_AGENT_API__PORT": str(busy)}
    ) as demo, httpx.Client(timeout=10) as http:
        port = int(demo.kiosk_url.split(":")[2].split("/")[0])
        assert busy < port <= busy + 20
        assert http.get(demo.kiosk_url).status_code == 200
        assert demo.courier_code is not None
        signed_in = http.post(f"{demo.base_url}/api/kiosk/courier/sign-in",
                              json={"code": demo.courier_code}).json()
        assert signed_in["ok"] is True, signed_in


def test_locker_ctl_finds_the_demo_broker_and_names_the_one_it_tried(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = (tmp_path / "agent.err").open("w")
    with demo_agent(state, env={"LOCKER_AGENT_MQTT__ENABLED": "true"}, stderr=log):
        found = subprocess.run(
            [str(BIN / "locker-ctl"), "fleet"], capture_output=True, text=True, timeout=60,
            env=clean_environment(LOCKER_AGENT_STATE_DIR=str(state)), cwd=tmp_path,
        )
        assert found.returncode == 0, found.stderr
        assert "demo-locker-001" in found.stdout and "online" in found.stdout
        assert "using the demo locker's broker 127.0.0.1:" in found.stderr
    nobody = free_port()
    missed = subprocess.run(
        [str(BIN / "locker-ctl"), "--port", str(nobody), "--timeout", "2", "fleet"],
        capture_output=True, text=True, timeout=60, env=clean_environment(), cwd=tmp_path,
    )
    assert missed.returncode != 0
    assert f"127.0.0.1:{nobody}" in missed.stderr
    # a clean stop (SIGTERM, as at the end of demo_agent) says nothing at WARNING
    log.close()
    assert not warnings_while_stopping((tmp_path / "agent.err").read_text())


def test_ctrl_c_stops_the_demo_without_a_warning(tmp_path: Path) -> None:
    log_path = tmp_path / "agent.err"
    with log_path.open("w") as log, demo_agent(
        tmp_path / "state", env={"LOCKER_AGENT_MQTT__ENABLED": "true"}, stderr=log
    ) as demo:
        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(20) == 0
    text = log_path.read_text()
    assert "MQTT disconnected" in text
    assert not warnings_while_stopping(text), text


def with_api(config: Path, port: int) -> Path:
    config.write_text(config.read_text().replace(
        "[[compartments]]", f"[api]\nenabled = true\nport = {port}\n\n[[compartments]]", 1))
    return config


def test_hw_test_leaves_the_api_port_alone(write_config: ConfigWriter) -> None:
    with held_port() as busy:
        config = with_api(write_config(auto_close=0.05), busy)
        result = subprocess.run(
            [str(BIN / "locker-agent"), "hw-test", "--config", str(config), "A01",
             "--close-timeout", "5"],
            capture_output=True, text=True, timeout=120, env=clean_environment(),
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout


def test_doctor_checks_the_api_port(write_config: ConfigWriter) -> None:
    with held_port() as busy:
        config = with_api(write_config(), busy)
        result = subprocess.run(
            [str(BIN / "locker-agent"), "doctor", "--config", str(config)],
            capture_output=True, text=True, timeout=120, env=clean_environment(),
        )
    assert f"FAIL  api       127.0.0.1:{busy} is taken by another program" in result.stdout
    free = with_api(write_config(), free_port())
    result = subprocess.run(
        [str(BIN / "locker-agent"), "doctor", "--config", str(free)],
        capture_output=True, text=True, timeout=120, env=clean_environment(),
    )
    assert "PASS  api" in result.stdout


def test_doctor_and_status_point_at_the_real_cause(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    doctor = subprocess.run(
        [str(BIN / "locker-agent"), "doctor", "--config", str(missing)],
        capture_output=True, text=True, timeout=60, env=clean_environment(),
    )
    assert "correct the key" not in doctor.stdout
    assert "give the path of the locker's config file" in doctor.stdout
    (tmp_path / ".state").mkdir()
    (tmp_path / ".state" / "locker.db").write_bytes(b"")  # where `make run` keeps its state
    status = subprocess.run(
        [str(BIN / "locker-agent"), "status", "--config", str(REPO / "config/simulated.toml")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=clean_environment(LOCKER_AGENT_STATE_DIR=str(tmp_path / "elsewhere")),
    )
    assert status.returncode != 0
    assert "has the locker run yet" not in status.stderr
    assert "LOCKER_AGENT_STATE_DIR=.state" in status.stderr
    assert str(tmp_path / "elsewhere") in status.stderr


def test_locker_ctl_ignores_a_stale_or_planted_demo_broker_file(tmp_path: Path) -> None:
    # review: the file could send this user's credentials and signed commands anywhere
    broker_dir = tmp_path / ".state" / "mosquitto"
    broker_dir.mkdir(parents=True)
    cases = {
        "elsewhere": ("203.0.113.7:1884", str(os.getpid())),  # not loopback
        "stale": (f"127.0.0.1:{free_port()}", "999999999"),  # that broker is gone
    }
    for name, (address, pid) in cases.items():
        (broker_dir / "listening").write_text(address + "\n")
        (broker_dir / "mosquitto.pid").write_text(pid + "\n")
        result = subprocess.run(
            [str(BIN / "locker-ctl"), "--timeout", "2", "fleet"], capture_output=True,
            text=True, timeout=60, cwd=tmp_path, env=clean_environment(),
        )
        assert "using the demo locker's broker" not in result.stderr, name
        assert address not in result.stderr, name
