"""Door and flow events pushed to kiosk pages as server-sent events.

The service tells :class:`LiveFeed` about every committed batch (on the event loop); each page
has a small queue. A page that falls behind is cut off and its browser reconnects, reading the
doors afresh, so a stuck page never holds memory. Only what a screen needs leaves: the event
type, the compartment and its place, never an assignment id or a code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from locker_agent.api.context import ApiContext
from locker_agent.api.schemas import door_place
from locker_agent.app.ports.storage import StoredEvent

LIVE_TYPES = frozenset({
    "unlock_requested", "unlock_pulsed", "door_opened", "door_closed", "unlock_abandoned",
    "door_jammed", "door_left_open", "picked_up", "deposited", "return_deposited",
    "return_collected", "reclaimed", "out_of_service", "back_in_service",
})
QUEUE_SIZE = 256
_CLOSED: dict[str, Any] = {}


class LiveFeed:
    def __init__(self, context: ApiContext) -> None:
        self._context = context
        self._pages: set[asyncio.Queue[dict[str, Any]]] = set()
        self._closed = False
        context.service.subscribe(self._committed)

    @property
    def pages(self) -> int:
        return len(self._pages)

    def _committed(self, batch: Sequence[StoredEvent]) -> None:
        messages = [self._message(e) for e in batch if e.type in LIVE_TYPES]
        if not messages or self._closed:
            return
        for queue in list(self._pages):
            for message in messages:
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:
                    self._cut_off(queue)
                    break

    def _message(self, event: StoredEvent) -> dict[str, Any]:
        message: dict[str, Any] = {"type": event.type, "at": event.at.isoformat()}
        if event.compartment_id is not None:
            message["compartment"] = door_place(self._context, event.compartment_id).model_dump()
        if event.type == "unlock_abandoned":
            message["reason"] = event.data.get("reason")
        if event.type in ("unlock_requested", "unlock_pulsed", "door_opened"):
            message["purpose"] = event.data.get("purpose")
        return message

    def _cut_off(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._pages.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(_CLOSED)

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """Messages for one page until it goes away, falls behind or the feed closes."""
        if self._closed:
            return
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._pages.add(queue)
        try:
            yield {"type": "hello"}
            while True:
                message = await queue.get()
                if message is _CLOSED:
                    return
                yield message
        finally:
            self._pages.discard(queue)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self._closed = True
        for queue in list(self._pages):
            with contextlib.suppress(asyncio.QueueFull):
                self._cut_off(queue)
