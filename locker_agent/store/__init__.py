"""Durable state: SQLite through SQLModel, with a transactional outbox."""

from locker_agent.store.repository import InboxRecord, Store, StoredEvent, StoreError

__all__ = ["InboxRecord", "Store", "StoreError", "StoredEvent"]
