"""``[retention]``: how long the database keeps what it no longer needs."""

from __future__ import annotations

from pydantic import Field

from locker_agent.config.fields import Section


class RetentionConfig(Section):
    """How long the database keeps what it no longer needs (bounded disk on an SD card)."""

    published_events_days: int = Field(default=14, ge=1, le=3650)
    """Days an event is kept in the outbox after the cloud acknowledged it (never unpublished
    ones: those stay until published or dropped by the outbox bound)."""
    audit_days: int = Field(default=90, ge=1, le=3650)
    """Days of the locker's own audit trail."""
    finished_assignments_days: int = Field(default=90, ge=1, le=3650)
    """Days a finished parcel or return (and its dead codes) is remembered after it ended."""
    inbox_days: int = Field(default=8, ge=1, le=3650)
    """Days a command id is remembered for at-most-once (keep above command_horizon_h)."""
    vacuum_interval_h: int = Field(default=168, ge=1, le=720)
    """Hours between full VACUUMs that give freed space back to the file system."""
