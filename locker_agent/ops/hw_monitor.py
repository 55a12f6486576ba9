"""``locker-agent hw-monitor``: watch the locker's inputs live, for installers at the bench.

Prints every door change, keypad key, keypad or scanner entry as it happens, on any backend,
until Ctrl-C or ``duration_s``. On the simulated backend, lines typed at the terminal move its
doors (``open A01``, ``force A01``, ``close A01``) and anything else counts as a code entry.

Codes are credentials: by default only their source and length are shown (keys as ``•``).
``show_codes`` prints them in clear, for bench work on a locker holding no real parcels.
Nothing is written to the database and no lock is pulsed: every output is held off.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from locker_agent.app.ports.hardware import CodeEntry, CodeInput, HardwareError
from locker_agent.config import AgentConfig
from locker_agent.domain.model import DoorState
from locker_agent.hardware.console import CommandHandler, ConsoleCodeInput
from locker_agent.hardware.keypad import MatrixKeypad
from locker_agent.hardware.simulated import SimulatedLocker
from locker_agent.runtime.hardware import build_code_inputs, build_hardware

SHOW_CODES_WARNING = (
    "WARNING: --show-codes prints codes in clear; use it only on a bench locker holding no "
    "real parcels, and clear the terminal afterwards"
)


class HardwareMonitor:
    """Formats what the hardware reports as one timestamped line each."""

    def __init__(self, out: Callable[[str], None], *, show_codes: bool = False) -> None:
        self._out = out
        self.show_codes = show_codes

    def say(self, message: str) -> None:
        self._out(f"{datetime.now().strftime('%H:%M:%S.%f')[:-3]}  {message}")

    def door(self, compartment_id: str, state: DoorState) -> None:
        self.say(f"door {compartment_id}: {state.value}")

    def key(self, key: str) -> None:
        self.say(f"keypad: key {key if self.show_codes else '•'}")

    async def entry(self, entry: CodeEntry) -> None:
        shown = f": {entry.text}" if self.show_codes else ""
        self.say(f"{entry.source}: code entered ({len(entry.text)} characters){shown}")


async def hw_monitor(
    config: AgentConfig,
    *,
    duration_s: float | None = None,
    show_codes: bool = False,
    out: Callable[[str], None] = print,
    stdin: TextIO | None = None,
) -> None:
    """Watch the configured hardware until SIGINT/SIGTERM or ``duration_s`` seconds.

    Raises HardwareError if the hardware cannot be taken (e.g. the daemon holds it).
    """
    monitor = HardwareMonitor(out, show_codes=show_codes)
    if show_codes:
        out(SHOW_CODES_WARNING)
    locks, doors, simulator = build_hardware(config)
    inputs: list[CodeInput] = build_code_inputs(config, locks)
    for code_input in inputs:
        if isinstance(code_input, MatrixKeypad):
            code_input.key_listener = monitor.key
    if simulator is not None:
        inputs.append(ConsoleCodeInput(stdin, commands=_door_commands(simulator, monitor)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started: list[CodeInput] = []
    try:
        await locks.start()  # takes the outputs and holds every lock off
        await doors.start()
        doors.subscribe(monitor.door)
        for compartment_id, state in sorted(doors.read().items()):
            monitor.door(compartment_id, state)
        for code_input in inputs:
            await code_input.start(monitor.entry)
            started.append(code_input)
        names = ", ".join(type(i).__name__ for i in inputs) or "no code inputs"
        monitor.say(f"watching {config.hardware.backend} hardware ({names}); Ctrl-C to stop")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration_s):
                await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for code_input in started:
            await code_input.stop()
        await doors.stop()
        await locks.stop()


def _door_commands(simulator: SimulatedLocker, monitor: HardwareMonitor) -> CommandHandler:
    async def command(words: list[str]) -> None:
        action, *rest = words
        if action not in ("open", "force", "close") or len(rest) != 1:
            monitor.say("simulated doors: open ID, force ID or close ID")
            return
        try:
            if action == "close":
                simulator.close_door(rest[0])
            else:
                simulator.open_door(rest[0], force=True)  # no lock is pulsed here
        except (HardwareError, KeyError, ValueError) as exc:
            monitor.say(f"simulated doors: {exc}")

    return command
