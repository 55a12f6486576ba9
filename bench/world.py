"""An agent running in-process and the physical world around it: doors a hand opens and shuts.

The simulated backend's doors are moved through the simulator; the gpio backend's through the
gpiozero ``MockFactory`` pins its reed switches read, as a door would move them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

import httpx

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.app.ports.storage import StoredEvent
from locker_agent.app.service import LockerService
from locker_agent.domain.model import AssignmentStatus, DoorState
from locker_agent.runtime.daemon import Agent

HOUR = 3600.0


class Doors(Protocol):
    def open(self, compartment_id: str) -> None: ...
    def close(self, compartment_id: str) -> None: ...


class SimulatedDoors:
    def __init__(self, agent: Agent) -> None:
        assert agent.simulator is not None
        self._simulator = agent.simulator

    def open(self, compartment_id: str) -> None:
        self._simulator.open_door(compartment_id)

    def close(self, compartment_id: str) -> None:
        self._simulator.close_door(compartment_id)


class MockPinDoors:
    """Reed switches to ground with the pull-up on: a shut door pulls its pin low."""

    def __init__(self, agent: Agent) -> None:
        sensors: dict[str, int] = agent.doors.sensors  # type: ignore[attr-defined]
        factory: Any = agent.doors.pin_factory  # type: ignore[attr-defined]
        self._pins = {cid: factory.pin(pin) for cid, pin in sensors.items()}

    def open(self, compartment_id: str) -> None:
        self._pins[compartment_id].drive_high()

    def close(self, compartment_id: str) -> None:
        self._pins[compartment_id].drive_low()

    def close_all(self) -> None:
        for pin in self._pins.values():
            pin.drive_low()


def doors_for(agent: Agent) -> Doors:
    if agent.simulator is not None:
        return SimulatedDoors(agent)
    doors = MockPinDoors(agent)
    doors.close_all()
    return doors


class Pulses:
    """Counts the pulses the agent records (``unlock_pulsed``, committed as the relay goes on).

    Polling the relay alone can miss a whole pulse when this process is off the CPU for
    longer than the pulse (50 ms in the benchmarks; it happened on the loaded 2-core VM): the
    wait then lasted until the jam retry, 10 s later. A pulse on record ends the wait too.
    """

    def __init__(self, agent: Agent) -> None:
        self.counts: dict[str, int] = {}
        agent.service.subscribe(self._committed)

    def _committed(self, stored: Sequence[StoredEvent]) -> None:
        for event in stored:
            if event.type == "unlock_pulsed" and event.compartment_id:
                self.counts[event.compartment_id] = self.counts.get(event.compartment_id, 0) + 1

    def of(self, compartment_id: str) -> int:
        return self.counts.get(compartment_id, 0)


_PULSES: weakref.WeakKeyDictionary[LockerService, Pulses] = weakref.WeakKeyDictionary()


def pulses(agent: Agent) -> Pulses:
    """The agent's pulse counter (one per agent, subscribed on first use)."""
    counter = _PULSES.get(agent.service)
    if counter is None:
        counter = _PULSES[agent.service] = Pulses(agent)
    return counter


def relay_on_or_pulsed(agent: Agent, compartment_id: str, pulses_before: int) -> bool:
    """The relay is on now, or a pulse began since ``pulses_before`` was read."""
    return (compartment_id in agent.locks.energised()
            or pulses(agent).of(compartment_id) > pulses_before)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the locker did not get there in time")
        await asyncio.sleep(0.001)


async def load_parcels(agent: Agent, doors: Doors, count: int) -> list[tuple[str, str]]:
    """A courier puts ``count`` parcels in (one per free compartment); their (compartment, code)."""
    service = agent.service
    loaded = []
    for _ in range(count):
        assignment_id = f"bench-{secrets.token_hex(6)}"
        code = f"{secrets.randbelow(10**8):08d}"
        now = service.now()
        free = [
            c for c in service.locker.compartments.values()
            if not c.assignment_ids and c.id not in service.locker.intents
        ]
        if not free:
            break
        compartment_id = free[0].id
        before = pulses(agent).of(compartment_id)
        service.apply(partial(
            service.locker.reserve, assignment_id, pickup_code=code,
            compartment_id=compartment_id, now=now, hold_seconds=72 * HOUR,
            reservation_ttl_s=24 * HOUR))
        service.apply(partial(
            service.locker.begin_deposit, assignment_id, actor="bench-courier", now=now))
        await until(partial(relay_on_or_pulsed, agent, compartment_id, before))
        await settle_door(agent, doors, compartment_id)
        await until(partial(_deposited, agent, assignment_id))
        loaded.append((compartment_id, code))
    return loaded


def _deposited(agent: Agent, assignment_id: str) -> bool:
    status = agent.service.locker.assignments[assignment_id].status
    return status is AssignmentStatus.DEPOSITED


async def settle_door(agent: Agent, doors: Doors, compartment_id: str) -> None:
    """Once the pulse has begun: the door is pulled open, then shut again."""
    locker = agent.service.locker
    await until(lambda: compartment_id not in agent.locks.energised())
    doors.open(compartment_id)
    await until(lambda: locker.compartments[compartment_id].door is DoorState.OPEN)
    doors.close(compartment_id)
    await until(lambda: compartment_id not in locker.intents
                and locker.compartments[compartment_id].door is DoorState.CLOSED)


async def timed_pickup(agent: Agent, doors: Doors, compartment_id: str, code: str) -> float:
    """Milliseconds from the code's submission to the lock output energised."""
    before = pulses(agent).of(compartment_id)
    started = time.perf_counter()
    outcome = await agent.service.submit_code(CodeEntry("keypad", code))
    if not outcome.ok:
        raise RuntimeError(f"pickup refused: {outcome.message}")
    while not relay_on_or_pulsed(agent, compartment_id, before):
        await asyncio.sleep(0)
    elapsed = (time.perf_counter() - started) * 1000
    await settle_door(agent, doors, compartment_id)
    return elapsed


Pickup = Callable[[Agent, "Doors", str, str], Awaitable[float]]


async def kiosk_pickup(agent: Agent, doors: Doors, compartment_id: str, code: str) -> float:
    """Milliseconds from the kiosk page's POST of the code to the lock output energised.

    The request travels over real TCP to the agent's uvicorn server, from a client on the
    agent's own loop (the kiosk browser runs on the same board).
    """
    assert agent.api is not None
    before = pulses(agent).of(compartment_id)

    async def energised() -> float:
        while not relay_on_or_pulsed(agent, compartment_id, before):
            await asyncio.sleep(0)
        return time.perf_counter()

    async with httpx.AsyncClient(base_url=agent.api.url) as client:
        await client.get("/api/kiosk/doors")  # the page is loaded before the customer types
        started = time.perf_counter()
        watch = asyncio.get_running_loop().create_task(energised())
        response = await client.post("/api/kiosk/code", json={"code": code})
        if response.status_code != 200 or not response.json().get("ok"):
            watch.cancel()
            raise RuntimeError(f"kiosk refused the code: {response.status_code} {response.text}")
        elapsed = (await watch - started) * 1000
    await settle_door(agent, doors, compartment_id)
    return elapsed


async def pickup_latencies(
    agent: Agent, samples: int, pickup: Pickup = timed_pickup
) -> list[float]:
    """Load parcels and time their pickups, round after round, until ``samples`` are taken."""
    doors = doors_for(agent)
    await asyncio.sleep(0.05)  # let the door readings from start-up settle
    latencies: list[float] = []
    while len(latencies) < samples:
        loaded = await load_parcels(agent, doors, samples - len(latencies))
        if not loaded:
            raise RuntimeError("no compartment free to load a parcel into")
        for compartment_id, code in loaded:
            latencies.append(await pickup(agent, doors, compartment_id, code))
    return latencies
