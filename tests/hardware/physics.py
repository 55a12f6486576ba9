"""The physical world around gpiozero's mock pins: reed switches, relays and sprung doors.

:class:`ReedSwitchPin` is a door sensor line as its pull resistor and switch make it;
:class:`RelayPin` is a lock relay output; :class:`LockerPhysics` joins them so that a pulse on
a lock's relay springs its door open (the reed switch opens) and a person shuts it again a
little later, unless that lock is jammed. Build it on a MockFactory *before* the driver takes
its pins, so the pins are created with these classes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin  # type: ignore[import-untyped]


class ReedSwitchPin(MockPin):  # type: ignore[misc]
    """A mock pin with a reed switch on it: a shut door ties the line to the rail opposite
    its pull resistor, an open door leaves it at the pull's level."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.shut = True
        super().__init__(*args, **kwargs)

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self.apply()

    def _level(self) -> bool:
        pulled_high = self._pull == "up"
        return not pulled_high if self.shut else pulled_high

    def apply(self) -> None:
        """Drive the line as the switch and the pull resistor do, firing edge callbacks."""
        if self.function != "input" or self._pull == "floating":
            return
        if self._level():
            self.drive_high()
        else:
            self.drive_low()

    def apply_silently(self) -> None:
        """Change the level without any edge callback: an edge gpiozero missed."""
        self._change_state(self._level())


class RelayPin(MockPin):  # type: ignore[misc]
    """A relay's output line; ``on_change(level)`` hears every level change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.on_change: Callable[[bool], None] | None = None
        super().__init__(*args, **kwargs)

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed and self.on_change is not None:
            self.on_change(value)
        return changed

    def high_intervals(self) -> list[tuple[float, float]]:
        """(start, end) monotonic times of every stretch this line was high."""
        intervals: list[tuple[float, float]] = []
        start: float | None = None
        at = self._last_change - sum(s.timestamp for s in self.states[1:])
        for index, state in enumerate(self.states):
            if index:
                at += state.timestamp
            if state.state and start is None:
                start = at
            elif not state.state and start is not None:
                intervals.append((start, at))
                start = None
        return intervals


class LockerPhysics:
    """Sprung doors behind relay-driven locks, on mock pins (BCM numbers by compartment)."""

    def __init__(
        self,
        factory: MockFactory,
        locks: Mapping[str, int],
        sensors: Mapping[str, int],
        *,
        relay_active_high: bool = True,
        close_after_s: float | None = 0.1,
    ) -> None:
        self.jammed: set[str] = set()
        self.close_after_s = close_after_s
        self.relays = {cid: factory.pin(pin, pin_class=RelayPin) for cid, pin in locks.items()}
        self.reeds = {
            cid: factory.pin(pin, pin_class=ReedSwitchPin) for cid, pin in sensors.items()
        }
        self._active_level = relay_active_high
        self._timers: list[threading.Timer] = []
        for cid, relay in self.relays.items():
            relay.on_change = self._relay_watcher(cid)

    def _relay_watcher(self, compartment_id: str) -> Callable[[bool], None]:
        def changed(level: bool) -> None:
            if level == self._active_level and compartment_id not in self.jammed:
                self.move(compartment_id, shut=False)
                if self.close_after_s is not None:
                    timer = threading.Timer(self.close_after_s, self.move, (compartment_id,),
                                            {"shut": True})
                    timer.daemon = True
                    self._timers.append(timer)
                    timer.start()

        return changed

    def move(self, compartment_id: str, *, shut: bool) -> None:
        reed = self.reeds[compartment_id]
        reed.shut = shut
        reed.apply()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
