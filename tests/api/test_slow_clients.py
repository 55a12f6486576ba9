"""Idle and slow clients cannot take the kiosk away (issue 15).

The agent runs as a process with the descriptor limit systemd gives a service by default
(1024). 1,100 clients connect and send half a request each; the kiosk must still answer a
code at once, and idle connections are closed after the header timeout.
"""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.demo_agent import demo_agent

IDLE = 1100
pytestmark = pytest.mark.slow


def _systemd_default_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))


def test_with_1100_idle_connections_the_kiosk_still_answers_a_code(tmp_path: Path) -> None:
    idle: list[socket.socket] = []
    with (tmp_path / "agent.log").open("w") as log, demo_agent(
        tmp_path / "state", env={"LOCKER_AGENT_API__HEADER_TIMEOUT_S": "3"}, stderr=log,
        preexec_fn=_systemd_default_descriptors,
    ) as demo:
        try:
            host, port = demo.base_url.removeprefix("http://").rsplit(":", 1)
            for _ in range(IDLE):
                client = socket.create_connection((host, int(port)))
                client.sendall(b"GET /healthz HTTP/1.1\r\nHost: locker\r\n")  # never finished
                idle.append(client)
            started = time.monotonic()
            with httpx.Client(timeout=10) as http:
                outcome = http.post(f"{demo.base_url}/api/kiosk/code",
                                    json={"code": demo.codes[0]}).json()
                answered_in = time.monotonic() - started
                assert outcome["ok"] is True, outcome
                assert answered_in < 5, answered_in
                assert http.get(f"{demo.base_url}/healthz").status_code == 200
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
            assert demo.process.poll() is None
        finally:
            for client in idle:
                client.close()
    logged = (tmp_path / "agent.log").read_text()
    assert logged.count("out of system resource") <= 1, "the log was flooded"
