"""Whether the kernel says the wall clock is synchronised (NTP), asked through adjtimex(2).

A Raspberry Pi has no battery-backed clock (before the Pi 5, and only with a battery there):
it boots at the last saved time, or in 1970, until NTP sets it. Until then the wall clock can
be far behind, and a time-limited credential checked against it would come back to life.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_TIME_ERROR = 5
"""adjtimex's return value while the clock is not synchronised (STA_UNSYNC)."""
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
"""systemd-timesyncd (Raspberry Pi OS's default) touches this once it has set the clock."""


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_reserved", ctypes.c_int * 11),
    ]


class KernelClockSync:
    """Asks the kernel on each call (cheap: one system call); remembers once it said yes.

    Under the shipped systemd unit (``ProtectClock=yes``) even a read-only adjtimex is
    refused with EPERM; then systemd-timesyncd's flag file answers instead.
    """

    def __init__(self, flag: Path = TIMESYNCD_FLAG) -> None:
        self._flag = flag
        self._synchronised = False
        self._adjtimex = None
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            self._adjtimex = libc.adjtimex

    def __call__(self) -> bool:
        if self._synchronised:
            return True
        state = -1
        if self._adjtimex is not None:
            timex = _Timex()  # modes = 0: read only
            state = self._adjtimex(ctypes.byref(timex))
        if state == -1:  # no adjtimex here, or the sandbox refuses it
            self._synchronised = self._flag.exists()
        else:
            self._synchronised = state != _TIME_ERROR
        if self._synchronised:
            logger.info("the wall clock is synchronised")
        return self._synchronised


def trusted() -> bool:
    """For a board whose clock is trusted from boot (``security.wall_clock = "trusted"``)."""
    return True
