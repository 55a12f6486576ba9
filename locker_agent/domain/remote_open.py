"""How many doors the network may open: the local police for remote openings.

In December 2020 about 2,700 PickPoint lockers in Moscow were opened over their network in
one attack. A locker therefore counts the doors opened by remote command (an operator's
``open``, a customer's in-app ``remote_pickup``) and, when more than ``limit`` come within
``window_s`` seconds, refuses the one over the limit, raises an alarm and refuses every remote
opening after it until an operator clears the alarm. Codes typed at the locker are not
affected: the person is standing there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

DEFAULT_LIMIT = 6
DEFAULT_WINDOW_S = 300.0


@dataclass
class RemoteOpenLimiter:
    """Counts remote openings over a sliding window of monotonic seconds (the cloud link
    counts other bursts with it too: cancels of parcels inside, code collisions)."""

    limit: int = DEFAULT_LIMIT
    window_s: float = DEFAULT_WINDOW_S
    _recent: deque[float] = field(default_factory=deque)

    def would_exceed(self, at: float) -> bool:
        """Whether one more remote opening at ``at`` would go over the limit."""
        self._forget_before(at - self.window_s)
        return len(self._recent) >= self.limit

    def recent(self, at: float) -> int:
        """How many were recorded within the window that ends at ``at``."""
        self._forget_before(at - self.window_s)
        return len(self._recent)

    def record(self, at: float) -> None:
        self._recent.append(at)

    def reset(self) -> None:
        self._recent.clear()

    @property
    def count(self) -> int:
        return len(self._recent)

    def _forget_before(self, cutoff: float) -> None:
        while self._recent and self._recent[0] <= cutoff:
            self._recent.popleft()
