"""``locker-ctl dashboard`` as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import BIN
from tests.dashboard.fleet_sim import FleetPublisher, simulated_locker
from tests.support.mosquitto import MosquittoBroker, free_port


def locker_ctl(*args: str) -> list[str]:
    executable = BIN / "locker-ctl"
    base = [str(executable)] if executable.exists() else [sys.executable, "-m",
                                                          "locker_agent.ctl.cli"]
    return [*base, *args]


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("LOCKER_DASHBOARD_TOKEN", "LOCKER_DASHBOARD_OPERATORS",
                         "LOCKER_CTL_SIGN_KEY")}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(locker_ctl(*args), capture_output=True, text=True, timeout=30,
                          env={**environment(), **(env or {})}, check=False)


def test_operators_are_added_listed_and_removed_and_a_token_is_shown_once(
    tmp_path: Path
) -> None:
    path = tmp_path / "operators.json"
    added = run("dashboard-operator", "add", "ops-anna", "--file", str(path))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("ops-anna.") and "\n" not in token  # the token alone on stdout
    assert "shown this once" in added.stderr and token not in added.stderr
    assert token.rpartition(".")[2] not in path.read_text()
    via_env = run("dashboard-operator", "add", "ops-ben", env={"LOCKER_DASHBOARD_OPERATORS":
                                                               str(path)})
    assert via_env.returncode == 0, via_env.stderr
    again = run("dashboard-operator", "add", "ops-anna", "--file", str(path))
    assert again.returncode == 2 and "already an operator" in again.stderr
    assert run("dashboard-operator", "add", "ops anna", "--file", str(path)).returncode == 2
    listed = run("dashboard-operator", "list", "--file", str(path))
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["ops-anna", "ops-ben"]
    assert token not in listed.stdout
    assert run("dashboard-operator", "remove", "ops-anna", "--file", str(path)).returncode == 0
    gone = run("dashboard-operator", "remove", "ops-anna", "--file", str(path))
    assert gone.returncode == 1 and "not an operator" in gone.stderr
    listed = run("dashboard-operator", "list", "--file", str(path))
    assert listed.stdout.startswith("ops-ben\t")


def test_the_dashboard_command_serves_the_fleet(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    with FleetPublisher(mosquitto.host, mosquitto.port) as publisher:
        publisher.retain_state([simulated_locker("depot-1")])
    operators = tmp_path / "operators.json"
    token = run("dashboard-operator", "add", "ops-anna", "--file", str(operators)).stdout.strip()
    port = free_port()
    process = subprocess.Popen(
        locker_ctl("--port", str(mosquitto.port), "dashboard", "--operators", str(operators),
                   "--http-port", str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment(),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=url, timeout=5) as http:
            while True:
                try:
                    http.get("/")
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.communicate()[0]
                    assert time.monotonic() < deadline, "the dashboard did not come up"
                    time.sleep(0.1)
            assert http.get("/api/fleet").status_code == 401
            signed = http.post("/api/session", json={"token": token})
            assert signed.json() == {"operator": "ops-anna"}
            lockers = http.get("/api/fleet").json()["lockers"]
            assert [s["id"] for s in lockers] == ["depot-1"]
            assert lockers[0]["compartments"] == 24
            assert "/static/dashboard.js" in http.get("/").text
            assert http.get("/static/dashboard.js").is_success
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert f"dashboard on http://127.0.0.1:{port}/" in output
    assert "1 operator)" in output


def test_without_an_operators_file_it_refuses_to_start(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    broker = ("--port", str(mosquitto.port))
    result = run(*broker, "dashboard")
    assert result.returncode == 2 and "--operators PATH" in result.stderr
    # the shared token of old is refused with the way to operators of one's own
    token_file = tmp_path / "token"
    token_file.write_text("depot-token-0123456789\n")
    result = run(*broker, "dashboard", "--token-file", str(token_file))
    assert result.returncode == 2 and "--token-file is gone" in result.stderr
    assert "dashboard-operator add" in result.stderr
    result = run(*broker, "dashboard", env={"LOCKER_DASHBOARD_TOKEN": "depot-token-0123456789"})
    assert result.returncode == 2 and "no longer has one shared token" in result.stderr
    result = run(*broker, "dashboard", "--operators", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_a_taken_port_is_said_plainly_and_the_default_moves_on(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    # issue 17: beside `make run` on 8080 the dashboard died with a uvicorn traceback, code 3
    from locker_agent.ctl.dashboard.server import listen

    operators = tmp_path / "operators.json"
    assert run("dashboard-operator", "add", "ops-anna", "--file", str(operators)).returncode == 0
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        result = run("--port", str(mosquitto.port), "dashboard", "--operators", str(operators),
                     "--http-port", str(taken))
        assert result.returncode == 2, result.stderr
        assert f"cannot serve on 127.0.0.1:{taken}" in result.stderr
        assert "--http-port" in result.stderr and "Traceback" not in result.stderr
        with listen("127.0.0.1", taken, try_next=20) as moved:  # what the default does
            assert taken < moved.getsockname()[1] <= taken + 20
