"""The local API's connections, bounded: slow or idle clients cannot take the kiosk away.

uvicorn waits for a request's headers as long as a client cares to send them, and accepts
as many connections as there are file descriptors. A few hundred clients that open a
connection and say nothing would then exhaust the process's descriptors, and the kiosk page,
``/healthz`` and every new connection would fail. Here every connection must finish its
request headers within ``header_timeout_s``, and at most ``max_connections`` are open: when
a new one would go over, the oldest connection still waiting for its headers is closed to
make room, so the newest client (the kiosk, a health probe) is served.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

logger = logging.getLogger(__name__)


class ConnectionGuard:
    """Counts the API's connections and closes the idle ones; one per server."""

    def __init__(self, *, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self._waiting: OrderedDict[int, asyncio.BaseTransport] = OrderedDict()
        """Connections that have not finished a request's headers yet, oldest first."""
        self._open = 0
        self.closed_idle = 0
        self.evicted = 0

    @property
    def open(self) -> int:
        return self._open

    def opened(self, key: int, transport: asyncio.BaseTransport) -> None:
        self._open += 1
        if self._open > self.max_connections:
            victim = next(iter(self._waiting.values()), transport)
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 1000 == 0:
                logger.warning("API connections at their limit: closing idle ones",
                               extra={"fields": {"limit": self.max_connections,
                                                 "evicted": self.evicted}})
            victim.close()
            if victim is transport:
                return
        self._waiting[key] = transport
        asyncio.get_running_loop().call_later(
            self.header_timeout_s, self._expire, key, transport
        )

    def request_started(self, key: int) -> None:
        self._waiting.pop(key, None)

    def closed(self, key: int) -> None:
        self._waiting.pop(key, None)
        self._open -= 1

    def _expire(self, key: int, transport: asyncio.BaseTransport) -> None:
        if self._waiting.get(key) is transport:
            del self._waiting[key]
            self.closed_idle += 1
            transport.close()


def guarded(protocol: type[asyncio.Protocol], guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, with every connection reported to ``guard``."""

    class Guarded(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            guard.opened(id(self), transport)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if getattr(self, "cycle", None) is not None:  # a request's headers are in
                guard.request_started(id(self))

        def connection_lost(self, exc: Exception | None) -> None:
            guard.closed(id(self))
            super().connection_lost(exc)

    Guarded.__name__ = f"Guarded{protocol.__name__}"
    return Guarded
