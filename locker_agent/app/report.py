"""Human-readable views of a locker's state, for the terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from locker_agent.domain.locker import Locker


def compartment_rows(locker: Locker, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "label": labels.get(c.id, c.id),
            "size": c.size,
            "accessible": c.accessible,
            "state": locker.state_of(c.id).value,
            "door": c.door.value,
            "out_of_service_reason": c.out_of_service_reason,
            "assignments": sorted(c.assignment_ids),
        }
        for c in locker.compartments.values()
    ]


def assignment_rows(locker: Locker) -> list[dict[str, Any]]:
    rows = []
    for a in sorted(locker.assignments.values(), key=lambda a: (a.compartment_id or "", a.id)):
        remaining = None
        if a.status.value == "deposited" and a.hold_deadline is not None:
            remaining = locker.clock.remaining(a.hold_deadline)
        elif a.reservation_deadline is not None:
            remaining = locker.clock.remaining(a.reservation_deadline)
        rows.append(
            {
                "id": a.id,
                "kind": a.kind.value,
                "status": a.status.value,
                "compartment": a.compartment_id,
                "size": a.size,
                "barcode": a.barcode,
                "remaining_s": None if remaining is None else round(remaining),
                "paused": a.paused_at is not None,
            }
        )
    return rows


def _hours(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.1f} h"


def status_text(locker: Locker, labels: Mapping[str, str]) -> str:
    service = (
        "in service" if locker.in_service
        else f"OUT OF SERVICE: {locker.out_of_service_reason}"
    )
    counts = {k.value: v for k, v in locker.counts().items() if v}
    lines = [
        f"locker {locker.locker_id}: {service}; "
        + ", ".join(f"{v} {k}" for k, v in counts.items()),
        "",
        f"{'compartment':<12} {'label':<8} {'size':<4} {'acc':<3} {'state':<15} {'door':<7} "
        "assignments",
    ]
    for row in compartment_rows(locker, labels):
        state = row["state"]
        if row["out_of_service_reason"]:
            state = f"{state} ({row['out_of_service_reason']})"
        lines.append(
            f"{row['id']:<12} {row['label']:<8} {row['size']:<4} "
            f"{'yes' if row['accessible'] else '':<3} {state:<15} {row['door']:<7} "
            f"{', '.join(row['assignments']) or '-'}"
        )
    assignments = assignment_rows(locker)
    lines += ["", f"{len(assignments)} active assignments"]
    if assignments:
        lines.append(
            f"{'assignment':<20} {'kind':<9} {'status':<10} {'compartment':<12} {'left':<8}"
        )
        for row in assignments:
            left = _hours(row["remaining_s"]) + (" (paused)" if row["paused"] else "")
            lines.append(
                f"{row['id']:<20} {row['kind']:<9} {row['status']:<10} "
                f"{row['compartment'] or '-':<12} {left}"
            )
    return "\n".join(lines)
