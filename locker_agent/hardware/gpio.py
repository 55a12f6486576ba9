"""Locks on relays and doors on reed switches, wired straight to the Pi's GPIO, via gpiozero.

Each compartment has one relay output that energises its solenoid lock and one reed-switch
input that reads whether its door is shut. gpiozero sits behind its pin-factory seam: pass a
``Factory`` (``MockFactory()`` in tests, an ``LGPIOFactory`` on the Pi) or None to let
gpiozero choose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Literal, Protocol, cast

from gpiozero import DigitalInputDevice, DigitalOutputDevice  # type: ignore[import-untyped]

from locker_agent.app.ports.hardware import (
    DoorListener,
    DoorSensors,
    HardwareError,
    LockDriver,
    check_unlock_request,
)
from locker_agent.domain.model import DoorState
from locker_agent.hardware.door_tracker import DoorStateTracker

logger = logging.getLogger(__name__)


class _Relay(Protocol):
    """The part of gpiozero's DigitalOutputDevice this driver uses."""

    @property
    def value(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def on(self) -> None: ...
    def off(self) -> None: ...
    def blink(self, on_time: float, off_time: float, n: int | None, background: bool) -> None: ...
    def close(self) -> None: ...


class _Reed(Protocol):
    """The part of gpiozero's DigitalInputDevice this driver uses."""

    @property
    def value(self) -> int: ...
    @property
    def closed(self) -> bool: ...

    when_activated: Callable[[], None] | None
    when_deactivated: Callable[[], None] | None

    def close(self) -> None: ...


class GpioLocker(LockDriver, DoorSensors):
    """Solenoid locks on relays and door reed switches on GPIO pins (BCM numbers).

    ``relay_active_high``: a high output energises a relay (False for the common active-low
    relay boards). ``door_closed_when``: the level a shut door reads; "low" is a reed switch
    to ground with the pull-up enabled, "high" a switch to 3V3 with the pull-down enabled.
    ``door_debounce_ms``: a door must hold a level this long before it counts (0: at once).
    ``door_poll_interval_s``: every input is also read this often, so that an edge gpiozero
    missed is still noticed.

    One object is both the lock driver and the door sensors; start() and stop() take and
    release all its pins. Door listeners run on the event loop the locker was started on.
    """

    def __init__(
        self,
        locks: Mapping[str, int],
        sensors: Mapping[str, int],
        *,
        relay_active_high: bool = True,
        door_closed_when: Literal["low", "high"] = "low",
        door_debounce_ms: int = 50,
        door_poll_interval_s: float = 1.0,
        pin_factory: object | None = None,
    ) -> None:
        if not locks:
            raise ValueError("a locker needs at least one lock")
        if door_closed_when not in ("low", "high"):
            raise ValueError(f"door_closed_when must be 'low' or 'high', got {door_closed_when!r}")
        if not 0 <= door_debounce_ms <= 1000:
            raise ValueError(f"door_debounce_ms must be in 0..1000, got {door_debounce_ms!r}")
        if not door_poll_interval_s > 0:
            raise ValueError(f"door_poll_interval_s must be > 0, got {door_poll_interval_s!r}")
        pins = list(locks.values()) + list(sensors.values())
        if len(set(pins)) != len(pins):
            raise ValueError("every lock and sensor needs a pin of its own")
        self.locks = dict(locks)
        self.sensors = dict(sensors)
        self.relay_active_high = relay_active_high
        self.door_closed_when = door_closed_when
        self.door_debounce_s = door_debounce_ms / 1000
        self.door_poll_interval_s = door_poll_interval_s
        self.pin_factory = pin_factory
        self._doors = DoorStateTracker(self.sensors)
        self._relays: dict[str, _Relay] = {}
        self._reeds: dict[str, _Reed] = {}
        self._pulse_locks: dict[str, asyncio.Lock] = {}
        self._settling: dict[str, asyncio.TimerHandle] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def healthy(self) -> bool:
        """Started, and every relay and reed-switch device still open."""
        return (
            self.started
            and len(self._relays) == len(self.locks)
            and len(self._reeds) == len(self.sensors)
            and not any(relay.closed for relay in self._relays.values())
            and not any(reed.closed for reed in self._reeds.values())
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:  # started on a loop that is gone: start afresh
            self._release()
        try:
            for compartment_id, pin in self.locks.items():
                self._relays[compartment_id] = cast(
                    _Relay,
                    DigitalOutputDevice(
                        pin,
                        active_high=self.relay_active_high,
                        initial_value=False,
                        pin_factory=self.pin_factory,
                    ),
                )
            for compartment_id, pin in self.sensors.items():
                self._reeds[compartment_id] = cast(
                    _Reed,
                    DigitalInputDevice(
                        pin,
                        pull_up=self.door_closed_when == "low",
                        bounce_time=self.door_debounce_s or None,
                        pin_factory=self.pin_factory,
                    ),
                )
        except Exception as exc:
            self._release()
            raise HardwareError(f"could not take the GPIO pins: {exc}") from exc
        self._pulse_locks = {cid: asyncio.Lock() for cid in self.locks}
        self._loop = loop
        for compartment_id, reed in self._reeds.items():
            # Silent from UNKNOWN (first reading); a door moved while we were stopped is news.
            known = self._doors[compartment_id] is not DoorState.UNKNOWN
            self._doors.update(compartment_id, self._read_reed(reed), notify=known)
            edge = self._edge_callback(loop, compartment_id)
            reed.when_activated = edge
            reed.when_deactivated = edge
        self._poll_task = loop.create_task(self._poll(), name="gpio-door-poll")

    async def stop(self) -> None:
        poll = self._poll_task
        self._poll_task = None
        self._loop = None
        self._release()
        if poll is not None and not poll.get_loop().is_closed():
            poll.cancel()
            if poll.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(poll, return_exceptions=True)

    def _release(self) -> None:
        """De-energise every relay first, then let go of all pins; never raises."""
        self._loop = None
        for handle in self._settling.values():
            handle.cancel()
        self._settling.clear()
        for compartment_id, relay in self._relays.items():
            try:
                if not relay.closed:
                    relay.off()
            except Exception:
                logger.exception("could not de-energise the relay of %s", compartment_id)
        for reed in self._reeds.values():
            try:
                reed.when_activated = None
                reed.when_deactivated = None
            except Exception:
                logger.debug("could not detach a reed switch callback", exc_info=True)
        devices: list[_Relay | _Reed] = [*self._relays.values(), *self._reeds.values()]
        self._relays.clear()
        self._reeds.clear()
        for device in devices:
            try:
                device.close()
            except Exception:
                logger.exception("could not release a GPIO device")

    # -- LockDriver -------------------------------------------------------------------------

    async def unlock(self, compartment_id: str, pulse_s: float) -> None:
        check_unlock_request(compartment_id, pulse_s, known=self.locks, started=self.started)
        lock = self._pulse_locks[compartment_id]
        async with lock:
            relay = self._relays.get(compartment_id)
            if self._pulse_locks.get(compartment_id) is not lock or relay is None:
                raise HardwareError(
                    "lock driver stopped before the pulse", compartment_id=compartment_id
                )
            logger.debug("pulse on %s for %.3f s", compartment_id, pulse_s)
            try:
                try:
                    relay.on()
                    # gpiozero's background blink ends the pulse on its own thread, on time
                    # even while the event loop is stalled
                    relay.blink(on_time=pulse_s, off_time=0, n=1, background=True)
                except Exception as exc:
                    raise HardwareError(
                        f"could not energise the lock of {compartment_id}: {exc}",
                        compartment_id=compartment_id,
                    ) from exc
                await asyncio.sleep(pulse_s)
            finally:
                # stop() may have de-energised and released it already.
                if not relay.closed:
                    relay.off()

    def energised(self) -> frozenset[str]:
        relays = dict(self._relays)
        return frozenset(cid for cid, relay in relays.items() if not relay.closed and relay.value)

    def force_off(self) -> None:
        for compartment_id, relay in dict(self._relays).items():
            try:
                if not relay.closed:
                    relay.off()
            except Exception:
                logger.exception("could not force the relay of %s off", compartment_id)

    # -- DoorSensors ------------------------------------------------------------------------

    def read(self) -> dict[str, DoorState]:
        return self._doors.snapshot()

    def subscribe(self, listener: DoorListener) -> None:
        self._doors.subscribe(listener)

    # -- door internals ---------------------------------------------------------------------

    @staticmethod
    def _read_reed(reed: _Reed) -> DoorState:
        # The pull is chosen so that the device is "active" exactly when the door is shut.
        return DoorState.CLOSED if reed.value else DoorState.OPEN

    def _edge_callback(
        self, loop: asyncio.AbstractEventLoop, compartment_id: str
    ) -> Callable[[], None]:
        def edge() -> None:  # on one of gpiozero's threads
            # RuntimeError: the loop is closed; stop() will tidy up.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._edge_seen, loop, compartment_id)

        return edge

    def _edge_seen(self, loop: asyncio.AbstractEventLoop, compartment_id: str) -> None:
        """A level change: read the pin again once it has held still for the debounce time."""
        if self._loop is not loop:
            return
        pending = self._settling.pop(compartment_id, None)
        if pending is not None:
            pending.cancel()
        if self.door_debounce_s:
            self._settling[compartment_id] = loop.call_later(
                self.door_debounce_s, self._settle, loop, compartment_id
            )
        else:
            self._settle(loop, compartment_id)

    def _settle(self, loop: asyncio.AbstractEventLoop, compartment_id: str) -> None:
        self._settling.pop(compartment_id, None)
        reed = self._reeds.get(compartment_id)
        if self._loop is not loop or reed is None or reed.closed:
            return
        self._doors.update(compartment_id, self._read_reed(reed))

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while self._loop is loop:
            await asyncio.sleep(self.door_poll_interval_s)
            for compartment_id, reed in list(self._reeds.items()):
                if self._loop is not loop:
                    return
                if compartment_id in self._settling:
                    continue  # an edge is being debounced already
                try:
                    state = self._read_reed(reed)
                except Exception:
                    logger.exception("could not read the door sensor of %s", compartment_id)
                    continue
                if state != self._doors[compartment_id]:
                    logger.debug("poll found a missed edge on %s", compartment_id)
                    self._edge_seen(loop, compartment_id)
