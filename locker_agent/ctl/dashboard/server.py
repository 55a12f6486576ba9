"""Run the dashboard: one MQTT connection feeds the fleet state and carries the commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from locker_agent.ctl.client import FleetClient, Received
from locker_agent.ctl.dashboard.actions import fleet_commander
from locker_agent.ctl.dashboard.app import SWEEP_INTERVAL_S, create_app
from locker_agent.ctl.dashboard.auth import SESSION_TTL_S, Sessions
from locker_agent.ctl.dashboard.fleet import Fleet
from locker_agent.ctl.dashboard.operators import Operators


@dataclass
class WebOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    certfile: Path | None = None
    keyfile: Path | None = None


def follow(client: FleetClient, fleet: Fleet, *, timeout: float = 10.0) -> None:
    """Feed ``fleet`` with everything the lockers publish (retained state arrives first)."""

    def ingest(message: Received) -> None:
        fleet.ingest(message.topic, message.payload, retained=message.retain)

    client.subscribe_all(fleet.subscriptions, ingest, timeout=timeout)


def build(client: FleetClient, *, operators: Operators, sign_with: Ed25519PrivateKey | None,
          timeout: float, secure_cookie: bool = False, session_ttl_s: float = SESSION_TTL_S,
          sweep_interval_s: float = SWEEP_INTERVAL_S) -> FastAPI:
    """The app over a connected client, subscribed here with :func:`follow`."""
    fleet = Fleet(client.prefix)
    follow(client, fleet, timeout=timeout)
    send = fleet_commander(client, sign_with=sign_with, timeout=timeout)
    app = create_app(fleet, Sessions(operators, ttl_s=session_ttl_s), send,
                     secure_cookie=secure_cookie, sweep_interval_s=sweep_interval_s)
    app.state.fleet = fleet
    return app


def serve(app: FastAPI, web: WebOptions) -> None:
    uvicorn.run(
        app, host=web.host, port=web.port, log_level="warning",
        ssl_certfile=str(web.certfile) if web.certfile else None,
        ssl_keyfile=str(web.keyfile) if web.keyfile else None,
    )
