"""The retained per-compartment message, built from the locker's state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from locker_agent.contract.messages import CompartmentMessage
from locker_agent.domain.locker import Locker

FrontPosition = tuple[int | None, int | None]
"""(row, column) of a door on the locker's front, from 1 at the top left; None if not said."""


def compartment_message(
    locker: Locker, compartment_id: str, labels: Mapping[str, str], now: datetime,
    *, positions: Mapping[str, FrontPosition] | None = None,
) -> dict[str, Any]:
    compartment = locker.compartments[compartment_id]
    row, column = (positions or {}).get(compartment.id, (None, None))
    message = CompartmentMessage(
        id=compartment.id,
        label=labels.get(compartment.id, compartment.id),
        size=compartment.size,
        accessible=compartment.accessible,
        state=locker.state_of(compartment.id).value,
        door=compartment.door.value,
        assignment_ids=sorted(compartment.assignment_ids),
        out_of_service_reason=compartment.out_of_service_reason,
        updated_at=now,
        row=row,
        column=column,
    )
    # a locker whose config places no door publishes what it always did: no row, no column
    return message.model_dump(mode="json", exclude={
        key for key in ("row", "column") if getattr(message, key) is None})
