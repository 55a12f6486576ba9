"""Why the agent could not start."""

from __future__ import annotations


class StartupError(Exception):
    """The agent cannot start; the message says why and what to do."""
