"""``[policies]``: hold periods, pulses, lockouts and remote-open limits the locker applies."""

from __future__ import annotations

from pydantic import Field

from locker_agent.config.fields import Section
from locker_agent.domain.locker import MAX_WAITING_PARCELS
from locker_agent.domain.lockout import COURIER_LOCKOUT, CUSTOMER_LOCKOUT


class Policies(Section):
    hold_period_h: float = Field(default=72, gt=0, le=24 * 60)
    """How long a delivered parcel waits for pickup before it expires."""
    reservation_ttl_h: float = Field(default=24, gt=0)
    """How long a reserved compartment waits for the courier's deposit."""
    lock_pulse_ms: int = Field(default=500, ge=50, le=2000)
    """Relay on-time per unlock; capped at 2 s because a lock coil must never stay energised."""
    max_simultaneous_unlocks: int = Field(default=1, ge=1, le=8)
    """Locks pulsed at once; limited by what the lock power supply can deliver."""
    unlock_gap_ms: int = Field(default=200, ge=0, le=5000)
    door_open_timeout_s: float = Field(default=10, gt=0)
    """How long after a pulse the door may take to open before it is called jammed."""
    door_left_open_alarm_s: float = Field(default=120, gt=0)
    max_waiting_parcels: int = Field(default=MAX_WAITING_PARCELS, ge=0, le=100_000)
    """Parcels announced without a compartment held for them (assign with hold_compartment
    false) kept at once; one more is refused as locker_full. Each costs memory."""
    min_code_length: int = Field(default=8, ge=4, le=32)
    """Shortest pickup, return or courier code accepted from the cloud. Together with the
    lockout rate below it sets how long guessing takes (docs/security.md): lower it only
    with a lower ``lockout_locker_per_hour``."""
    lockout_free_attempts: int = Field(default=CUSTOMER_LOCKOUT.free_failures, ge=1, le=20)
    """Wrong codes in a row one input (keypad, scanner, kiosk) may make before it must wait."""
    lockout_first_delay_s: float = Field(default=CUSTOMER_LOCKOUT.first_delay_s, gt=0, le=3600)
    """The wait after the first wrong code beyond the free ones; it doubles with each next."""
    lockout_max_delay_s: float = Field(default=CUSTOMER_LOCKOUT.max_delay_s, gt=0, le=86400)
    lockout_input_quiet_s: float = Field(default=CUSTOMER_LOCKOUT.input_quiet_s, gt=0, le=7 * 86400)
    """An input with no wrong code for this long starts afresh (the locker-wide limit stays)."""
    lockout_locker_burst: int = Field(default=CUSTOMER_LOCKOUT.locker_burst, ge=1, le=1000)
    """Wrong customer codes the whole locker absorbs before the hourly rate applies."""
    lockout_locker_per_hour: float = Field(default=CUSTOMER_LOCKOUT.locker_per_hour, gt=0, le=1000)
    """Sustained wrong customer codes per hour, all inputs together: the bound on an attacker."""
    courier_lockout_locker_burst: int = Field(default=COURIER_LOCKOUT.locker_burst, ge=1, le=1000)
    courier_lockout_locker_per_hour: float = Field(
        default=COURIER_LOCKOUT.locker_per_hour, gt=0, le=1000
    )
    """Courier codes are their own namespace with their own, stricter, locker-wide limit."""
    courier_session_idle_s: float = Field(default=300, gt=0, le=3600)
    """A courier's session at the kiosk ends after this long without a step."""
    telemetry_interval_s: float = Field(default=300, ge=10)
    remote_open_limit: int = Field(default=6, ge=0, le=100)
    """Doors the network may open (``open``, ``remote_pickup``) within remote_open_window_s;
    one more raises an alarm and locks remote opening until an operator clears it."""
    remote_open_window_s: float = Field(default=300, gt=0, le=86400)
