"""Where each message of the contract lives, for one locker."""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")


@dataclass(frozen=True)
class Topics:
    prefix: str
    locker_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.locker_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def commands(self) -> str:
        """The subscription filter for this locker's commands."""
        return f"{self.base}/cmd/+"

    @property
    def replies(self) -> str:
        return f"{self.base}/replies"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def compartment(self, compartment_id: str) -> str:
        return f"{self.base}/compartments/{compartment_id}"

    def command_name(self, topic: str) -> str | None:
        """The command named by ``topic`` if it is one of this locker's command topics."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head):]
        if not name or len(name) > 32 or not set(name) <= COMMAND_NAME_CHARS:
            return None
        return name
