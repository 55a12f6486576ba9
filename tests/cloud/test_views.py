"""The retained compartment message: where each door is on the locker's front."""

from __future__ import annotations

from locker_agent.cloud.views import compartment_message
from locker_agent.contract.messages import CompartmentMessage
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.locker import Locker
from tests.domain.support import SECRET, T0, compartments


def locker() -> Locker:
    return Locker("L-1", compartments([("A01", "S", False), ("A02", "M", True)]),
                  CodeHasher(SECRET))


def test_a_placed_door_carries_its_row_and_column() -> None:
    message = compartment_message(locker(), "A02", {"A02": "2"}, T0,
                                  positions={"A01": (1, 1), "A02": (2, 1)})
    assert (message["row"], message["column"], message["label"]) == (2, 1, "2")
    assert CompartmentMessage.model_validate(message).row == 2


def test_a_locker_that_places_no_door_publishes_what_it_always_did() -> None:
    message = compartment_message(locker(), "A01", {}, T0)
    assert "row" not in message and "column" not in message
    assert set(message) == {"id", "label", "size", "accessible", "state", "door",
                            "assignment_ids", "out_of_service_reason", "updated_at"}
    # and half a place is published as it is: the config's row alone
    half = compartment_message(locker(), "A01", {}, T0, positions={"A01": (3, None)})
    assert half["row"] == 3 and "column" not in half
