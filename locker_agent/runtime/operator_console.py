"""Commands typed at the simulated locker's terminal: play the customer's hands."""

from __future__ import annotations

from collections.abc import Callable

from locker_agent.app.ports.hardware import HardwareError
from locker_agent.app.report import status_text
from locker_agent.app.service import LockerService
from locker_agent.hardware.simulated import SimulatedLocker

HELP = """\
Type a pickup or return code and press Enter to use it, or one of:
  open ID     open compartment ID's door (only while its latch is released)
  force ID    force compartment ID's door open (a tamper alarm)
  close ID    close compartment ID's door
  status      show every compartment
  help        show this text"""


class OperatorConsole:
    def __init__(
        self, service: LockerService, simulator: SimulatedLocker, *, out: Callable[[str], None]
    ) -> None:
        self._service = service
        self._simulator = simulator
        self._out = out

    def greeting(self) -> str:
        return HELP

    async def command(self, words: list[str]) -> None:
        name, args = words[0], words[1:]
        if name == "help":
            self._out(HELP)
        elif name == "status":
            self._out(self.status_table())
        elif name in ("open", "close", "force"):
            if len(args) != 1:
                self._out(f"usage: {name} COMPARTMENT_ID")
                return
            self._door(name, args[0])

    def _door(self, action: str, compartment_id: str) -> None:
        if compartment_id not in self._service.locker.compartments:
            self._out(f"there is no compartment {compartment_id!r}")
            return
        try:
            if action == "close":
                self._simulator.close_door(compartment_id)
            else:
                self._simulator.open_door(compartment_id, force=action == "force")
        except HardwareError as exc:
            self._out(str(exc))

    def status_table(self) -> str:
        return status_text(self._service.locker, self._service.labels)
