"""The locker's local HTTP API and the touchscreen kiosk page it serves.

Runs inside the agent, on the agent's event loop (see :mod:`locker_agent.api.server`), so
every request reaches the :class:`~locker_agent.app.service.LockerService` on the loop that owns
the locker's state.
"""

from locker_agent.api.app import create_app
from locker_agent.api.context import ApiContext, Place

__all__ = ["ApiContext", "Place", "create_app"]
