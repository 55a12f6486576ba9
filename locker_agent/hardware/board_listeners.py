"""Who hears that a lock-control board stopped answering, or answers again.

Shared by the bus drivers (RS485, Modbus): each board drives some compartments, and the
service takes those out of service while their board is silent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

BoardListener = Callable[[int, bool, tuple[str, ...]], None]
"""Told ``(board, online, compartments)`` when a board stops answering or answers again."""


class BoardListeners:
    """The listeners of one bus, and which compartments each board drives."""

    def __init__(self, wiring: Iterable[tuple[str, int]]) -> None:
        """``wiring``: ``(compartment_id, board)`` pairs; a compartment may be on two boards
        (its lock on one, its door sensor on another)."""
        self._compartments: dict[int, set[str]] = {}
        for compartment_id, board in wiring:
            self._compartments.setdefault(board, set()).add(compartment_id)
        self._listeners: list[BoardListener] = []

    def subscribe(self, listener: BoardListener) -> None:
        """Call ``listener(board, online, compartments)`` when a board drops off or comes back.

        Runs on the event loop; a listener that raises is logged and does not stop polling.
        """
        self._listeners.append(listener)

    def tell(self, board: int, online: bool) -> None:
        compartments = tuple(sorted(self._compartments.get(board, ())))
        for listener in list(self._listeners):
            try:
                listener(board, online, compartments)
            except Exception:
                logger.exception("board listener failed for board %d", board)
