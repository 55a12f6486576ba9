"""Choosing a compartment for a parcel: the smallest free one that fits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from locker_agent.domain.model import Compartment


def size_rank(sizes: Sequence[str], size: str) -> int:
    try:
        return sizes.index(size)
    except ValueError:
        raise ValueError(f"unknown size {size!r}; sizes are {', '.join(sizes)}") from None


def smallest_fit(
    free: Iterable[Compartment],
    sizes: Sequence[str],
    size: str,
    *,
    accessible: bool = False,
) -> Compartment | None:
    """The smallest compartment of at least ``size`` (and accessible if asked), else None.

    Ties go to the compartment listed first, so allocation is deterministic.
    """
    wanted = size_rank(sizes, size)
    best: Compartment | None = None
    best_rank = len(sizes)
    for compartment in free:
        rank = size_rank(sizes, compartment.size)
        if rank < wanted or (accessible and not compartment.accessible):
            continue
        if rank < best_rank:
            best, best_rank = compartment, rank
    return best
