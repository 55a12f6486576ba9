"""``[api]``: the local HTTP API and kiosk page."""

from __future__ import annotations

from pydantic import Field

from locker_agent.config.fields import Section


class ApiConfig(Section):
    """The local HTTP API and the kiosk page (served by uvicorn inside the agent)."""

    enabled: bool = False
    """Off unless the config asks: a locker listens on no port it was not told to."""
    host: str = Field(default="127.0.0.1", min_length=1)
    """Address to listen on; the kiosk browser runs on the same board."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests)."""
    max_body_bytes: int = Field(default=4096, ge=512, le=1_048_576)
    """Largest request body accepted; anything bigger gets 413."""
    screen_timeout_s: float = Field(default=60.0, ge=5, le=3600)
    """Idle seconds before the kiosk page goes back to its start screen."""
    max_connections: int = Field(default=256, ge=8, le=10_000)
    """Connections open at once; past it the oldest one still waiting for its request is
    closed, so idle clients cannot keep the kiosk out (keep it well under LimitNOFILE)."""
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """A connection that has not sent a whole request's headers by then is closed."""
