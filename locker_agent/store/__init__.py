"""Durable state: SQLite through SQLModel, with a transactional outbox."""

from locker_agent.store.repository import Store, StoredEvent, StoreError

__all__ = ["Store", "StoreError", "StoredEvent"]
