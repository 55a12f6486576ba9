"""``locker-ctl dashboard`` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import BIN
from tests.dashboard.conftest import TOKEN
from tests.dashboard.fleet_sim import FleetPublisher, simulated_locker
from tests.support.mosquitto import MosquittoBroker, free_port


def locker_ctl(*args: str) -> list[str]:
    executable = BIN / "locker-ctl"
    base = [str(executable)] if executable.exists() else [sys.executable, "-m",
                                                          "locker_agent.ctl.cli"]
    return [*base, *args]


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("LOCKER_DASHBOARD_TOKEN", "LOCKER_CTL_SIGN_KEY")}


def test_the_dashboard_command_serves_the_fleet(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    with FleetPublisher(mosquitto.host, mosquitto.port) as publisher:
        publisher.retain_state([simulated_locker("depot-1")])
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    process = subprocess.Popen(
        locker_ctl("--port", str(mosquitto.port), "dashboard", "--token-file", str(token_file),
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
            assert http.post("/api/session", json={"operator": "ops", "token": TOKEN}).is_success
            lockers = http.get("/api/fleet").json()["lockers"]
            assert [s["id"] for s in lockers] == ["depot-1"]
            assert lockers[0]["compartments"] == 24
            assert "/static/dashboard.js" in http.get("/").text
            assert http.get("/static/dashboard.js").is_success
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert f"dashboard on http://127.0.0.1:{port}/" in output


def test_without_a_token_it_refuses_to_start(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    result = subprocess.run(
        locker_ctl("--port", str(mosquitto.port), "dashboard"),
        capture_output=True, text=True, timeout=30, env=environment(), check=False,
    )
    assert result.returncode == 2
    assert "needs a sign-in token" in result.stderr
    short = tmp_path / "short"
    short.write_text("abc")
    result = subprocess.run(
        locker_ctl("--port", str(mosquitto.port), "dashboard", "--token-file", str(short)),
        capture_output=True, text=True, timeout=30, env=environment(), check=False,
    )
    assert result.returncode == 2
    assert "at least 12 characters" in result.stderr
