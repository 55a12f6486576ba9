"""Where each message of the contract lives, for one locker."""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMAND_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")
REPLY_INBOX_LEVEL = "_ctl"
"""Operators' reply inboxes live at ``{prefix}/_ctl/{client}/replies``."""
_CLIENT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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

    def is_reply_topic(self, topic: str) -> bool:
        """Whether a reply may go to ``topic``: this locker's ``replies``, or an operator's
        reply inbox ``{prefix}/_ctl/{client}/replies``. Nothing else: a command must never
        make the locker publish onto another locker's topics, or onto its own commands."""
        if topic == self.replies:
            return True
        head = f"{self.prefix}/{REPLY_INBOX_LEVEL}/"
        if not topic.startswith(head) or not topic.endswith("/replies"):
            return False
        client = topic[len(head):-len("/replies")]
        return _CLIENT.fullmatch(client) is not None and client != "cmd"

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
