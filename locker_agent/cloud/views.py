"""The retained per-compartment message, built from the locker's state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from locker_agent.contract.messages import CompartmentMessage
from locker_agent.domain.locker import Locker


def compartment_message(
    locker: Locker, compartment_id: str, labels: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    compartment = locker.compartments[compartment_id]
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
    )
    return message.model_dump(mode="json")
