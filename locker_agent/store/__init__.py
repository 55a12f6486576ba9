"""Durable state: SQLite through SQLModel, with a transactional outbox.

:class:`Store` implements the application's :class:`~locker_agent.app.ports.storage.LockerStore`.
"""

from locker_agent.app.ports.storage import InboxRecord, StoredEvent, StoreError
from locker_agent.store.repository import Store

__all__ = ["InboxRecord", "Store", "StoreError", "StoredEvent"]
