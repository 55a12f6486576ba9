"""A dashboard over a real Mosquitto, with one real agent and a simulated fleet beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from playwright.sync_api import Browser, sync_playwright

from locker_agent.contract.signing import public_key_base64
from locker_agent.ctl.client import ConnectionOptions, FleetClient
from locker_agent.ctl.dashboard import operators
from locker_agent.ctl.dashboard.fleet import Fleet
from locker_agent.ctl.dashboard.operators import Operators
from locker_agent.ctl.dashboard.server import build
from tests.cloud.harness import AgentThread
from tests.conftest import ConfigWriter
from tests.dashboard.browser import CHROMIUM_ARGS, chromium_path
from tests.support.mosquitto import MosquittoBroker, free_port, mosquitto  # noqa: F401

OPERATORS = ("ops-anna", "ops-ben")
REAL_LOCKER = "real-locker"
REAL_FRONT = {"A01": (1, 1), "A02": (2, 1), "A03": (3, 1), "A04": (1, 2), "A05": (2, 2),
              "A06": (3, 2)}
"""The real locker's front: two columns of three doors, A06 (XL) at the bottom right."""


@dataclass(frozen=True)
class OperatorsFile:
    """An operators file and the tokens it was made with (tokens are shown once, kept here)."""

    path: Path
    tokens: dict[str, str]


@pytest.fixture(scope="session")
def operators_file(tmp_path_factory: pytest.TempPathFactory) -> OperatorsFile:
    """``ops-anna`` and ``ops-ben``, made once (each costs a scrypt); tests must not change it."""
    path = tmp_path_factory.mktemp("dashboard") / "operators.json"
    return OperatorsFile(path, {name: operators.add(path, name) for name in OPERATORS})


@pytest.fixture
def token(operators_file: OperatorsFile) -> str:
    """``ops-anna``'s token."""
    return operators_file.tokens["ops-anna"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's), one per test module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(),
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def operator_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def real_agent(write_config: ConfigWriter, mosquitto: MosquittoBroker,  # noqa: F811
               operator_key: Ed25519PrivateKey) -> Iterator[AgentThread]:
    """A real simulated locker: doors spring open on a pulse; two remote openings allowed;
    its doors placed on a front of 2 columns x 3 rows (``REAL_FRONT``)."""
    config = write_config(
        locker_id=REAL_LOCKER,
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.1,
              "reconnect_max_s": 0.5, "operator_public_key": public_key_base64(operator_key)},
        policies={"remote_open_limit": 2, "remote_open_window_s": 3600},
    )
    text = config.read_text()
    for compartment_id, (row, column) in REAL_FRONT.items():
        text = text.replace(f'id = "{compartment_id}"\n',
                            f'id = "{compartment_id}"\nrow = {row}\ncolumn = {column}\n')
    config.write_text(text)
    with AgentThread(config) as agent:
        yield agent


@dataclass
class Dashboard:
    app: FastAPI
    fleet: Fleet
    client: FleetClient

    def wait_for_locker(self, locker_id: str, compartments: int, timeout: float = 10, *,
                        online: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.fleet.locker(locker_id)
            if found and len(found["compartments"]) >= compartments \
                    and found["summary"]["online"] is online:
                return
            assert time.monotonic() < deadline, f"{locker_id} never showed up: {found}"
            time.sleep(0.02)


DashboardFactory = Callable[..., Dashboard]


@pytest.fixture
def make_dashboard(mosquitto: MosquittoBroker,  # noqa: F811
                   operators_file: OperatorsFile) -> Iterator[DashboardFactory]:
    clients: list[FleetClient] = []

    def make(*, sign_with: Ed25519PrivateKey | None = None, timeout: float = 5,
             operators_path: Path | None = None, **options: Any) -> Dashboard:
        client = FleetClient(ConnectionOptions(host=mosquitto.host, port=mosquitto.port))
        client.connect()
        clients.append(client)
        app = build(client, operators=Operators(operators_path or operators_file.path),
                    sign_with=sign_with, timeout=timeout, **options)
        return Dashboard(app, app.state.fleet, client)

    yield make
    for client in clients:
        client.close()


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    """Serve an app with uvicorn on a free port in a thread; return its base URL."""
    running: list[Served] = []

    def start(app: FastAPI) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        served = Served(f"http://127.0.0.1:{port}", server, thread)
        running.append(served)
        return served.url

    yield start
    for served in running:
        served.server.should_exit = True
        served.thread.join(10)
