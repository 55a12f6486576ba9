"""What a benchmark returns: samples, the statistics over them, and the target they meet."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Target:
    """``statistic`` of the samples must not exceed ``limit`` (both in the figure's unit)."""

    text: str
    statistic: str  # "median", "p99" or "max"
    limit: float


@dataclass
class Figure:
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    runs: str = ""
    """How the samples were taken, e.g. "200 unlocks" or "3 daemon processes"."""
    target: Target | None = None
    notes: list[str] = field(default_factory=list)
    pending: str | None = None
    """Set when the figure could not be measured yet: why."""
    failed: str | None = None
    """Set when the benchmark itself broke: the error."""

    @property
    def measured(self) -> bool:
        return bool(self.samples) and self.pending is None and self.failed is None

    def stat(self, name: str) -> float:
        if name == "median":
            return float(statistics.median(self.samples))
        if name == "p99":
            return percentile(self.samples, 0.99)
        if name == "max":
            return max(self.samples)
        raise ValueError(f"unknown statistic {name!r}")

    @property
    def median(self) -> float:
        return self.stat("median")

    @property
    def p99(self) -> float:
        return self.stat("p99")

    def verdict(self) -> str:
        """"met", "not met (… over)" or why there is no verdict."""
        if self.failed is not None:
            return f"benchmark failed: {self.failed}"
        if self.pending is not None:
            return f"pending: {self.pending}"
        if self.target is None:
            return "no target (context)"
        value = self.stat(self.target.statistic)
        if value <= self.target.limit:
            margin = self.target.limit - value
            return f"met ({fmt(margin)} {self.unit} to spare)"
        gap = value - self.target.limit
        return f"NOT met: {self.target.statistic} {fmt(gap)} {self.unit} over"


def fmt(value: float) -> str:
    """A number with about three significant figures."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
