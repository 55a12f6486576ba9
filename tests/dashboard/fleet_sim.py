"""Simulated lockers for dashboard tests: the real retained payloads, without whole agents.

A real :class:`~locker_agent.domain.locker.Locker` is built and moved through real
transitions (reservations, a compartment out of service); its ``status`` and
``compartments/*`` payloads come from the contract models and the agent's own view code, so
the dashboard reads exactly what a locker would publish. One MQTT connection publishes for
the whole simulated fleet, which keeps 1,000 lockers cheap.
"""

from __future__ import annotations

import json
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from locker_agent.cloud.views import compartment_message
from locker_agent.contract.messages import EventMessage, StatusMessage
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.locker import Locker
from locker_agent.domain.model import Compartment, DoorState

SIZES = ("S", "M", "L", "XL")


@dataclass(frozen=True)
class PlacedCompartment:
    id: str
    size: str
    row: int | None = None
    column: int | None = None


@dataclass
class SimulatedLocker:
    locker_id: str
    status: dict[str, Any]
    compartments: dict[str, dict[str, Any]]
    seq: int = 0
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def event(self, kind: str, compartment_id: str | None = None, **data: Any) -> dict[str, Any]:
        self.seq += 1
        return EventMessage(
            seq=self.seq, id=str(uuid.uuid4()), type=kind, at=datetime.now(UTC),
            locker_id=self.locker_id, compartment_id=compartment_id, data=data,
        ).model_dump(mode="json")


def front_of(config: Path) -> list[PlacedCompartment]:
    """The compartments of a locker config, with their row and column on the front."""
    with config.open("rb") as file:
        entries = tomllib.load(file)["compartments"]
    return [PlacedCompartment(e["id"], e["size"], e.get("row"), e.get("column"))
            for e in entries]


def simulated_locker(locker_id: str, *, compartments: int = 24, reserved: int = 3,
                     out_of_service: int = 1, online: bool = True,
                     front: list[PlacedCompartment] | None = None,
                     ids: str = "C{n:02d}") -> SimulatedLocker:
    """A locker of ``compartments`` doors named by ``ids`` (``{n}`` from 1), placed nowhere;
    or, with ``front``, exactly those doors at their places."""
    now = datetime.now(UTC)
    front = front or [PlacedCompartment(ids.format(n=n + 1), SIZES[n % len(SIZES)])
                      for n in range(compartments)]
    locker = Locker(
        locker_id,
        [Compartment(id=place.id, size=place.size, door=DoorState.CLOSED) for place in front],
        CodeHasher(b"simulated-fleet-secret-32-bytes!"),
    )
    for n in range(reserved):
        locker.reserve(f"{locker_id}-p{n}", pickup_code=f"{48291370 + n}", now=now,
                       hold_seconds=72 * 3600, reservation_ttl_s=24 * 3600, size="S")
    for place in front[len(front) - out_of_service:]:
        locker.set_compartment_service(place.id, in_service=False, reason="damaged hinge",
                                       now=now)
    status = StatusMessage(
        online=online, locker_id=locker_id, version="sim", boot_id=str(uuid.uuid4()),
        since=now, in_service=locker.in_service, free_by_size=locker.free_by_size(),
    ).model_dump(mode="json")
    positions = {place.id: (place.row, place.column) for place in front}
    views = {cid: compartment_message(locker, cid, {}, now, positions=positions)
             for cid in locker.compartments}
    return SimulatedLocker(locker_id, status, views)


class FleetPublisher:
    """One MQTT connection that publishes for many simulated lockers."""

    def __init__(self, host: str, port: int, prefix: str = "lockers") -> None:
        self.prefix = prefix
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"fleet-sim-{uuid.uuid4().hex[:8]}")
        self._client.max_queued_messages_set(0)
        self._client.connect(host, port)
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> FleetPublisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def publish(self, topic: str, document: dict[str, Any] | None, *, retain: bool,
                qos: int = 0) -> mqtt.MQTTMessageInfo:

        payload = b"" if document is None else json.dumps(document).encode()
        return self._client.publish(f"{self.prefix}/{topic}", payload, qos=qos, retain=retain)

    def retain_state(self, lockers: list[SimulatedLocker], timeout: float = 60) -> None:
        """Publish every locker's retained status and compartments; return once all are in.

        QoS 0 for speed, then one QoS 1 message: the broker handles a connection's messages
        in order, so its PUBACK means every earlier one was taken.
        """
        for locker in lockers:
            self.publish(f"{locker.locker_id}/status", locker.status, retain=True)
            for cid, view in locker.compartments.items():
                self.publish(f"{locker.locker_id}/compartments/{cid}", view, retain=True)
        self.flush(timeout)

    def flush(self, timeout: float = 10) -> None:
        marker = self.publish("_sim/flush", {"at": datetime.now(UTC).isoformat()},
                              retain=False, qos=1)
        marker.wait_for_publish(timeout)

    def event(self, locker: SimulatedLocker, kind: str, compartment_id: str | None = None,
              **data: Any) -> dict[str, Any]:
        document = locker.event(kind, compartment_id, **data)
        self.publish(f"{locker.locker_id}/events", document, retain=False, qos=1
                     ).wait_for_publish(10)
        return document

    def compartment(self, locker: SimulatedLocker, compartment_id: str, **changes: Any) -> None:
        view = {**locker.compartments[compartment_id], **changes,
                "updated_at": datetime.now(UTC).isoformat()}
        locker.compartments[compartment_id] = view
        self.publish(f"{locker.locker_id}/compartments/{compartment_id}", view, retain=True,
                     qos=1).wait_for_publish(10)

    def clear(self, lockers: list[SimulatedLocker]) -> None:
        for locker in lockers:
            self.publish(f"{locker.locker_id}/status", None, retain=True)
            for cid in locker.compartments:
                self.publish(f"{locker.locker_id}/compartments/{cid}", None, retain=True)
        self.flush()
