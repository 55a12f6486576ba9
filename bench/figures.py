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
class Floor:
    """What the machine allows for the steps a figure is made of, measured in the same run
    (``bench.floors``): the figure's ratio to it says how close the code is to the machine."""

    text: str
    """What it is made of, e.g. "2 MQTT hops + 1 commit"."""
    value: float
    """In the unit of the figures compared with it."""


@dataclass(frozen=True)
class Target:
    """``statistic`` of the samples must not exceed the limit: ``limit`` in the figure's unit,
    or ``times_floor`` times the figure's :class:`Floor` measured in the same run."""

    text: str
    statistic: str  # "median", "p99" or "max"
    limit: float | None = None
    times_floor: float | None = None
    parts: tuple[Target, ...] = ()
    """Set by :meth:`all_of`: every one of these must be met (the fields above are unused)."""

    @classmethod
    def all_of(cls, *parts: Target) -> Target:
        """A target met when each of ``parts`` is (e.g. a median and a p99 limit)."""
        return cls("; ".join(p.text for p in parts), parts[0].statistic, parts=parts)

    @classmethod
    def ratio(cls, statistic: str, times: float) -> Target:
        """``statistic`` at most ``times`` the figure's floor."""
        return cls(f"{statistic} ≤ {times:g}x floor", statistic, times_floor=times)

    def limit_for(self, figure: Figure) -> float:
        if self.times_floor is not None:
            if figure.floor is None:
                raise ValueError(f"{figure.name}: a target relative to a floor needs a floor")
            return self.times_floor * figure.floor.value
        if self.limit is None:
            raise ValueError(f"{figure.name}: a target needs a limit or a floor")
        return self.limit

    def describe(self, figure: Figure) -> str:
        """The target's text, with the limit it comes to in this run when that is derived."""
        if self.parts:
            return "; ".join(part.describe(figure) for part in self.parts)
        if self.times_floor is None:
            return self.text
        try:
            return f"{self.text} (= {fmt(self.limit_for(figure))} {figure.unit})"
        except ValueError:
            return self.text


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
    floor: Floor | None = None
    """The machine's floor for this figure, measured in the same run."""

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

    def times_floor(self, name: str) -> float | None:
        """``stat(name)`` as a multiple of the floor, when there is one."""
        if self.floor is None or self.floor.value <= 0 or not self.measured:
            return None
        return self.stat(name) / self.floor.value

    def verdict(self) -> str:
        """"met", "not met (… over)" or why there is no verdict."""
        if self.failed is not None:
            return f"benchmark failed: {self.failed}"
        if self.pending is not None:
            return f"pending: {self.pending}"
        if self.target is None:
            return "no target (context)"
        verdicts = [self._verdict(part) for part in self.target.parts or (self.target,)]
        if len(verdicts) == 1:
            return verdicts[0]
        if all(v.startswith("met") for v in verdicts):
            return "met (" + "; ".join(v[len("met ("):-1] for v in verdicts) + ")"
        return "NOT met: " + "; ".join(
            v.removeprefix("NOT met: ") if not v.startswith("met") else v[len("met ("):-1] + " met"
            for v in verdicts)

    def _verdict(self, target: Target) -> str:
        value = self.stat(target.statistic)
        limit = target.limit_for(self)
        ratio = self.times_floor(target.statistic)
        if target.times_floor is not None and ratio is not None:
            said = f"{target.statistic} {ratio:.2g}x floor"
            if value <= limit:
                return f"met ({said})"
            return f"NOT met: {said}, {fmt(value - limit)} {self.unit} over"
        if value <= limit:
            margin = limit - value
            return f"met ({fmt(margin)} {self.unit} to spare)"
        gap = value - limit
        return f"NOT met: {target.statistic} {fmt(gap)} {self.unit} over"


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
