"""The service clock: time that counts against hold periods and reservation TTLs.

A parcel's hold period should only run while its owner can actually collect it. InPost adds
outage time to deadlines; we do the same by measuring deadlines in *service seconds*: a counter
that advances only while the locker is running and in service. Time the daemon is down, or the
locker is out of service, simply never gets added. The daemon feeds it elapsed time from the
monotonic clock, so wall-clock jumps (a Pi has no RTC until NTP syncs) cannot expire a parcel
early or late.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServiceClock:
    seconds: float = 0.0

    def advance(self, elapsed: float, *, in_service: bool) -> None:
        """Add ``elapsed`` seconds if customers could use the locker during them."""
        if elapsed < 0:
            raise ValueError("elapsed time cannot be negative")
        if in_service:
            self.seconds += elapsed

    def deadline(self, duration_s: float) -> float:
        return self.seconds + duration_s

    def remaining(self, deadline: float) -> float:
        return max(0.0, deadline - self.seconds)

    def is_past(self, deadline: float) -> bool:
        return self.seconds >= deadline
