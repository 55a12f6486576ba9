"""``locker-agent hw-test``: walk an installer through every compartment.

Each door is opened the way the agent opens doors in service (an operator opening recorded
with who and why, the pulse under the power budget), then the test waits for the door sensor
to report the door open and, after the installer closes it, closed again. A pass/fail table
says which locks, latches and sensors work. Runs on every backend, the simulated one too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from locker_agent.app.ports.storage import StoredEvent
from locker_agent.domain.errors import DomainError
from locker_agent.domain.model import DoorState
from locker_agent.runtime.daemon import Agent

ACTOR = "installer"
REASON = "hw-test"


@dataclass(frozen=True)
class CompartmentResult:
    compartment_id: str
    label: str
    opened_after_s: float | None
    closed: bool
    problem: str | None

    @property
    def passed(self) -> bool:
        return self.problem is None


async def hw_test(
    agent: Agent,
    compartment_ids: Sequence[str] | None = None,
    *,
    open_timeout_s: float = 10.0,
    close_timeout_s: float = 60.0,
    out: Callable[[str], None] = print,
) -> list[CompartmentResult]:
    """Open each compartment in turn and check its sensor follows; needs a started agent."""
    service = agent.service
    ids = list(compartment_ids or service.locker.compartments)
    polarity = inverted_polarity(agent)
    if polarity is not None:
        out(polarity)
    results = []
    for compartment_id in ids:
        label = service.label(compartment_id)
        out(f"compartment {label}: opening…")
        result = await _test_one(agent, compartment_id, label, open_timeout_s, close_timeout_s,
                                 out)
        results.append(result)
        out(f"compartment {label}: {'PASS' if result.passed else 'FAIL: ' + str(result.problem)}")
    out(report(results))
    return results


def inverted_polarity(agent: Agent) -> str | None:
    """What to say when every door reads open while no unlock is pending: on a locker just
    installed, that is a status reply read the wrong way round, not a row of open doors."""
    locker = agent.service.locker
    doors = [c.door for c in locker.compartments.values()]
    if len(doors) < 2 or locker.intents or any(d is not DoorState.OPEN for d in doors):
        return None
    if agent.config.hardware.backend == "rs485":
        current = agent.config.hardware.rs485.lock_bit_open_when_set
        return (
            f"every door reads open and none is being unlocked: the board probably reports "
            f"its doors the other way round. Check one door by hand, then set "
            f"hardware.rs485.lock_bit_open_when_set = {str(not current).lower()}"
        )
    if agent.config.hardware.backend == "modbus":
        reading = agent.config.hardware.modbus.door_closed_when
        return (
            f"every door reads open and none is being unlocked: the door inputs probably read "
            f"the other way round. Check one door by hand, then set "
            f'hardware.modbus.door_closed_when = "{"off" if reading == "on" else "on"}"'
        )
    return ("every door reads open and none is being unlocked: check the door sensors' "
            "wiring (hardware.gpio.door_closed_when)")


async def _test_one(
    agent: Agent, compartment_id: str, label: str, open_timeout_s: float,
    close_timeout_s: float, out: Callable[[str], None],
) -> CompartmentResult:
    service = agent.service
    compartment = service.locker.compartments.get(compartment_id)
    if compartment is None:
        return CompartmentResult(compartment_id, label, None, False, "no such compartment")
    if compartment.door is DoorState.OPEN:
        return CompartmentResult(compartment_id, label, None, False,
                                 "the door is already open: close it and test again")
    abandoned: list[StoredEvent] = []

    def listen(stored: Sequence[StoredEvent]) -> None:
        abandoned.extend(e for e in stored if e.type == "unlock_abandoned"
                         and e.compartment_id == compartment_id)

    service.subscribe(listen)
    try:
        try:
            service.apply(partial(service.locker.begin_operator_open, compartment_id,
                                  actor=ACTOR, reason=REASON, now=service.now(),
                                  source="hw-test"))
        except DomainError as exc:
            return CompartmentResult(compartment_id, label, None, False, exc.message)
        return await _follow_door(agent, compartment_id, label, open_timeout_s,
                                  close_timeout_s, abandoned, out)
    finally:
        service.unsubscribe(listen)


async def _follow_door(
    agent: Agent, compartment_id: str, label: str, open_timeout_s: float,
    close_timeout_s: float, abandoned: Sequence[StoredEvent], out: Callable[[str], None],
) -> CompartmentResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while _door(agent, compartment_id) is not DoorState.OPEN:
        if abandoned:  # the unlock failed: no point waiting out the timeout
            return CompartmentResult(compartment_id, label, None, False,
                                     _unlock_failure(agent, abandoned[0]))
        if loop.time() - started > open_timeout_s:
            return CompartmentResult(
                compartment_id, label, None, False,
                f"the door did not open within {open_timeout_s:g} s: check the lock, its "
                "wiring and power, and that the door is not jammed",
            )
        await asyncio.sleep(0.02)
    opened_after = loop.time() - started
    out(f"compartment {label}: open after {opened_after:.2f} s; please close the door")
    closing = loop.time()
    while _door(agent, compartment_id) is not DoorState.CLOSED:
        if loop.time() - closing > close_timeout_s:
            return CompartmentResult(
                compartment_id, label, opened_after, False,
                f"the sensor did not report the door closed within {close_timeout_s:g} s: "
                "check the door sensor and its wiring",
            )
        await asyncio.sleep(0.02)
    return CompartmentResult(compartment_id, label, opened_after, True, None)


def _unlock_failure(agent: Agent, event: StoredEvent) -> str:
    """The lock's own error, and where to look for its cause."""
    error = event.data.get("error")
    if not error:
        return f"the unlock was given up: {event.data.get('reason')}"
    hint = {
        "rs485": "check the RS485 wiring (A/B), the board's power and address switch, and "
                 "hardware.rs485.port and baudrate",
        "modbus": "check the RS485 wiring (A/B), each board's power and unit address, and "
                  "hardware.modbus.port, baudrate and parity",
        "gpio": "check the relay board's power and hardware.gpio",
    }.get(agent.config.hardware.backend, "check the lock hardware")
    return f"the lock board reported an error: {error}: {hint}"


def _door(agent: Agent, compartment_id: str) -> DoorState:
    """What the locker last heard from this door (read afresh each time: it changes)."""
    return agent.service.locker.compartments[compartment_id].door


def report(results: Sequence[CompartmentResult]) -> str:
    lines = [f"{'compartment':<12} {'label':<8} {'opened':<8} {'closed':<7} result"]
    for r in results:
        opened = f"{r.opened_after_s:.2f} s" if r.opened_after_s is not None else "-"
        lines.append(
            f"{r.compartment_id:<12} {r.label:<8} {opened:<8} {'yes' if r.closed else 'no':<7} "
            + ("PASS" if r.passed else f"FAIL: {r.problem}")
        )
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)
