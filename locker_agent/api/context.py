"""What the API is given by the composition root: the service, the doors' places, the checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from locker_agent.app.courier_desk import CourierDesk
from locker_agent.app.health import HealthCheck
from locker_agent.app.service import LockerService


@dataclass(frozen=True)
class Place:
    """Where a compartment is on the locker's front, as a customer is told to find it."""

    label: str
    size: str
    row: int | None = None
    column: int | None = None


@dataclass
class ApiContext:
    locker_id: str
    service: LockerService
    places: Mapping[str, Place]
    maintenance_token: str
    health_checks: Sequence[HealthCheck] = ()
    mqtt_connected: Callable[[], bool] | None = None
    """None when the locker has no cloud link configured."""
    courier_desk: CourierDesk | None = None
    loop_lag: Callable[[], float] | None = None
    """The event loop's recent worst lag, in seconds."""
    screen_timeout_s: float = 60.0
    max_body_bytes: int = 4096
    languages: tuple[str, ...] = field(default=("en", "ru", "zh-Hant", "it"))

    def place(self, compartment_id: str) -> Place:
        return self.places.get(compartment_id) or Place(label=compartment_id, size="")
