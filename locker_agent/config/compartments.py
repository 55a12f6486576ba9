"""``[[compartments]]``: each door, its size, wiring and place on the front."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from locker_agent.config.fields import CompartmentId, HardwareAddress, Section


class CompartmentConfig(Section):
    id: CompartmentId
    size: str
    """One of :attr:`AgentConfig.sizes`; checked there, where the list is known."""
    accessible: bool = False
    """Within reach from a wheelchair."""
    lock: HardwareAddress = None
    sensor: HardwareAddress = None
    """Door sensor; on rs485 and modbus it defaults to the lock's own channel."""
    label: str | None = Field(default=None, min_length=1, validate_default=True)
    """What a customer reads on the door; defaults to ``id``, so never None once validated."""
    row: int | None = Field(default=None, ge=1)
    """1 = top row."""
    column: int | None = Field(default=None, ge=1)
    """1 = leftmost column."""

    @field_validator("label")
    @classmethod
    def _label_defaults_to_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            compartment_id: str | None = info.data.get("id")
            return compartment_id
        return value
