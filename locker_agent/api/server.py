"""uvicorn inside the agent: a task on the agent's own event loop, started and stopped by it.

Sharing the loop means every request reaches the service on the loop that owns the locker's
state; nothing crosses threads. The socket is bound here, so a port in use is a clear start-up
error rather than uvicorn's ``sys.exit``; uvicorn's signal handling is left out, the agent
owns SIGTERM and SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from locker_agent.api.connections import ConnectionGuard, guarded
from locker_agent.api.live import LiveFeed

logger = logging.getLogger(__name__)

GRACEFUL_STOP_S = 2.0


class ApiServerError(Exception):
    """The API cannot listen; the message says where and why."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the agent's own handlers stay in place


class ApiServer:
    def __init__(
        self, app: FastAPI, *, host: str, port: int, max_connections: int = 256,
        header_timeout_s: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.connections = ConnectionGuard(
            max_connections=max_connections, header_timeout_s=header_timeout_s
        )
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def kiosk_url(self) -> str:
        return f"{self.url}/kiosk/"

    async def start(self, *, try_next_ports: int = 0) -> None:
        """Listen on the configured port; if it is taken, on the first free one of the next
        ``try_next_ports`` (the demo: a laptop's 8080 is often busy), said in the log."""
        wanted = self.port
        for offset in range(try_next_ports + 1):
            try:
                sock = self._bind(wanted + offset if wanted else 0)
                break
            except OSError as exc:
                in_use = exc.errno == errno.EADDRINUSE
                if in_use and offset < try_next_ports and wanted + offset + 1 <= 65535:
                    continue
                tried = (f"{self.host}:{wanted}" if offset == 0
                         else f"{self.host}:{wanted}-{wanted + offset}")
                raise ApiServerError(
                    f"cannot listen on {tried}: {exc.strerror or exc}; set api.port (or "
                    "api.enabled = false) in the config, or LOCKER_AGENT_API__PORT"
                ) from exc
        if wanted and sock.getsockname()[1] != wanted:
            logger.warning("port %d is taken; the API listens on %d instead",
                           wanted, sock.getsockname()[1])
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=int(GRACEFUL_STOP_S), server_header=False,
            timeout_keep_alive=5,
        )
        config.load()
        config.http_protocol_class = guarded(config.http_protocol_class, self.connections)
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[sock]), name="api"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise ApiServerError("the API server stopped as it started")
            await asyncio.sleep(0.01)
        logger.info("API listening", extra={"fields": {"url": self.url}})

    def _bind(self, port: int) -> socket.socket:
        infos = socket.getaddrinfo(self.host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock

    async def stop(self) -> None:
        """Close live streams, let requests in flight finish (briefly), stop listening."""
        feed = getattr(self.app.state, "feed", None)
        if isinstance(feed, LiveFeed):
            feed.close()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), GRACEFUL_STOP_S * 3)
            except TimeoutError:
                self._server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:
                logger.exception("API server failed while stopping")
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None
        self._task = None
