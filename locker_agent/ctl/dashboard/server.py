"""Run the dashboard: one MQTT connection feeds the fleet state and carries the commands."""

from __future__ import annotations

import errno
import socket
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


class PortTaken(OSError):
    """No port to serve on: the message names the ports tried."""


def listen(host: str, port: int, *, try_next: int = 0) -> socket.socket:
    """A listening socket on ``port``, or on the first free one of the next ``try_next``."""
    for candidate in range(port, min(port + try_next, 65535) + 1):
        infos = socket.getaddrinfo(host, candidate, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE and candidate < port + try_next:
                continue
            tried = f"{port}" if candidate == port else f"{port}-{candidate}"
            raise PortTaken(exc.errno, f"cannot serve on {host}:{tried}: "
                                       f"{exc.strerror or exc}") from None
        return sock
    raise PortTaken(errno.EADDRINUSE, f"no free port on {host} from {port}")


def serve(app: FastAPI, web: WebOptions, sock: socket.socket) -> None:
    """Serve ``app`` on the already listening ``sock`` until Ctrl-C."""
    config = uvicorn.Config(
        app, log_level="warning",
        ssl_certfile=str(web.certfile) if web.certfile else None,
        ssl_keyfile=str(web.keyfile) if web.keyfile else None,
    )
    uvicorn.Server(config).run(sockets=[sock])
