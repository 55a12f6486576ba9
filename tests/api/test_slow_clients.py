"""Idle and slow clients cannot take the kiosk away (issue 15).

The agent runs as a process with the descriptor limit systemd gives a service by default
(1024). 1,100 clients connect and send half a request each; the kiosk must still answer a
code at once, and idle connections are closed after the header timeout.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, REPO

IDLE = 1100
pytestmark = pytest.mark.slow


def _systemd_default_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))


def test_with_1100_idle_connections_the_kiosk_still_answers_a_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_AGENT_")}
    env.update({
        "LOCKER_AGENT_STATE_DIR": str(tmp_path / "state"),
        "LOCKER_AGENT_MQTT__ENABLED": "false",
        "LOCKER_AGENT_API__PORT": "0",
        "LOCKER_AGENT_API__HEADER_TIMEOUT_S": "3",
        "PYTHONUNBUFFERED": "1",
    })
    log = (tmp_path / "agent.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "locker-agent"), "run", "--config", str(REPO / "config/simulated.toml"),
         "--demo"],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env, text=True,
        preexec_fn=_systemd_default_descriptors,
    )
    idle: list[socket.socket] = []
    try:
        assert process.stdout is not None
        codes: list[str] = []
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "the agent stopped before printing the kiosk URL"
            if found := re.search(r"pickup code (\d{8,})", line):
                codes.append(found[1])
            if found := re.search(r"Kiosk page: (http://\S+)", line):
                url = found[1]
        assert url is not None and codes
        base = url.removesuffix("/kiosk/")
        host, port = base.removeprefix("http://").rsplit(":", 1)
        for _ in range(IDLE):
            client = socket.create_connection((host, int(port)))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: locker\r\n")  # never finished
            idle.append(client)
        started = time.monotonic()
        with httpx.Client(timeout=10) as http:
            outcome = http.post(f"{base}/api/kiosk/code", json={"code": codes[0]}).json()
            answered_in = time.monotonic() - started
            assert outcome["ok"] is True, outcome
            assert answered_in < 5, answered_in
            assert http.get(f"{base}/healthz").status_code == 200
            # the idle ones are closed once the header timeout has passed
            time.sleep(4)
            closed = 0
            for client in idle:
                client.settimeout(0.01)
                try:
                    closed += client.recv(1) == b""
                except (TimeoutError, BlockingIOError):
                    pass
                except ConnectionError:
                    closed += 1
            assert closed == IDLE, closed
            assert process.poll() is None
    finally:
        for client in idle:
            client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        log.close()
    logged = (tmp_path / "agent.log").read_text()
    assert logged.count("out of system resource") <= 1, "the log was flooded"
