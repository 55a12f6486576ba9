"""A real agent serving its API over real HTTP, on its own event loop in a background thread.

Tests talk to it only as a client would (httpx, schemathesis, a browser); anything they must
do to the locker itself (deposit a parcel, close a simulated door) runs on the agent's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from locker_agent.config import load_config
from locker_agent.domain.model import AssignmentStatus, DoorState
from locker_agent.runtime.daemon import Agent, build_agent

T = TypeVar("T")
HOUR = 3600.0

LOCKER = """\
locker_id = "kiosk-test"
state_dir = "{state_dir}"

[hardware]
backend = "simulated"

[hardware.simulated]
auto_open_on_unlock = true
auto_close_after_s = {auto_close}
console = false

[mqtt]
enabled = false

[policies]
lock_pulse_ms = 50
unlock_gap_ms = 0
door_open_timeout_s = 10
{lockout}

[api]
enabled = true
port = 0
screen_timeout_s = {screen_timeout}

[[compartments]]
id = "A01"
size = "S"
label = "1"
row = 1
column = 1

[[compartments]]
id = "A02"
size = "S"
label = "2"
row = 1
column = 2

[[compartments]]
id = "A03"
size = "M"
label = "12"
row = 2
column = 1

[[compartments]]
id = "A04"
size = "M"
label = "14"
row = 2
column = 2

[[compartments]]
id = "A05"
size = "L"
label = "21"
row = 3
column = 1
accessible = true

[[compartments]]
id = "A06"
size = "XL"
label = "22"
row = 3
column = 2
accessible = true
"""


def write_locker(
    directory: Path,
    *,
    auto_close: float | bool = False,
    screen_timeout: float = 60,
    lockout_first_delay_s: float | None = None,
) -> Path:
    path = directory / "kiosk-locker.toml"
    path.write_text(LOCKER.format(
        state_dir=directory / "state",
        auto_close=str(auto_close).lower(),
        screen_timeout=screen_timeout,
        lockout="" if lockout_first_delay_s is None
        else f"lockout_first_delay_s = {lockout_first_delay_s}",
    ))
    return path


class LiveAgent:
    """``with LiveAgent(config) as live:`` — the agent runs, ``live.url`` serves its API."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._agent: Agent | None = None

    def __enter__(self) -> LiveAgent:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._agent is not None:
                self.run(self._agent.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    async def _start(self) -> None:
        self._agent = build_agent(load_config(self.config_path))
        await self._agent.start()

    @property
    def agent(self) -> Agent:
        assert self._agent is not None
        return self._agent

    @property
    def url(self) -> str:
        assert self.agent.api is not None
        return self.agent.api.url

    @property
    def token(self) -> str:
        return (self.agent.config.state_dir / "api.token").read_text().strip()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coroutine`` on the agent's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Run a plain function on the agent's loop (the only place state may be touched)."""

        async def call() -> T:
            return function()

        return self.run(call())

    def deposit(self, assignment_id: str, code: str, *, size: str = "S") -> str:
        """A courier puts a parcel in (door opened and closed); returns its compartment."""
        return self.run(self._deposit(assignment_id, code, size))

    async def _deposit(self, assignment_id: str, code: str, size: str) -> str:
        service, simulator = self.agent.service, self.agent.simulator
        assert simulator is not None
        now = service.now()
        service.apply(lambda: service.locker.reserve(
            assignment_id, pickup_code=code, size=size, now=now,
            hold_seconds=72 * HOUR, reservation_ttl_s=24 * HOUR,
            barcode=f"PKG{assignment_id.upper()}",
        ))
        compartment = service.locker.assignments[assignment_id].compartment_id
        assert compartment is not None
        service.apply(lambda: service.locker.begin_deposit(assignment_id, actor="c-1", now=now))
        await until(lambda: service.locker.compartments[compartment].door is DoorState.OPEN)
        simulator.close_door(compartment)
        await until(lambda: service.locker.assignments[assignment_id].status
                    is AssignmentStatus.DEPOSITED)
        return compartment

    def door(self, compartment_id: str) -> DoorState:
        return self.call(lambda: self.agent.service.locker.compartments[compartment_id].door)

    def close_door(self, compartment_id: str) -> None:
        simulator = self.agent.simulator
        assert simulator is not None
        self.call(lambda: simulator.close_door(compartment_id))

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition`` (run on the agent's loop) holds."""
        self.run(until(condition, timeout), timeout + 5)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
