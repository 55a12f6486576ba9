"""Tell systemd how the agent is doing (``sd_notify``), without depending on libsystemd.

:class:`Notifier` sends the datagrams of the ``sd_notify(3)`` protocol to ``$NOTIFY_SOCKET``:
``READY=1`` once the database and the hardware are up, ``STOPPING=1`` at shutdown,
``RELOADING=1`` (with ``MONOTONIC_USEC=``) on SIGHUP, ``STATUS=`` text for ``systemctl status``
and ``WATCHDOG=1`` pings. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op. A
failed send is logged (rate-limited) and never raised: telling systemd must not break the
locker.

:class:`Watchdog` sends ``WATCHDOG=1`` only while every :data:`HealthCheck` passes. It runs
on the event loop, so a wedged loop sends nothing and systemd restarts the agent after
``WatchdogSec=``; a failing check (database locked, lock driver gone) does the same, and says
why in the log and in ``STATUS=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

from locker_agent.app.health import CheckResult, HealthCheck, check_name

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S: Final = 0.5
"""A datagram to PID 1 is queued at once; a full queue must not hold the event loop longer."""
WARNING_INTERVAL_S: Final = 60.0
"""The same warning (a failed send, a failing check) is logged at most this often."""


class _RateLimiter:
    """Allows one log line per key per ``interval_s``; counts what it held back."""

    def __init__(self, interval_s: float = WARNING_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay quiet; else how many were suppressed since the last allowed one."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)

    def reset(self, key: str) -> None:
        self._last.pop(key, None)
        self._suppressed.pop(key, None)


# --- the notifier ---------------------------------------------------------------------------


class Notifier:
    """Sends ``sd_notify`` messages to ``address`` (None: does nothing).

    ``address`` is a filesystem path or, starting with ``@``, an abstract socket name.
    Use :meth:`from_environment` in the daemon; tests may build one directly.
    """

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        warn_interval_s: float = WARNING_INTERVAL_S,
    ) -> None:
        self._address: str | None = None
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._limiter = _RateLimiter(warn_interval_s)
        if address is None or address == "":
            logger.debug("NOTIFY_SOCKET is not set: not running under systemd, not notifying")
        elif address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        else:
            logger.warning(
                "NOTIFY_SOCKET=%r is neither a path nor an abstract socket (@name); "
                "not notifying systemd",
                address,
            )

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        pid: int | None = None,
        unset_environment: bool = False,
    ) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET``, with the watchdog from ``$WATCHDOG_USEC``.

        ``$WATCHDOG_USEC`` counts only when ``$WATCHDOG_PID`` is unset or is this process.
        ``unset_environment`` removes the three variables from ``os.environ`` afterwards, so
        child processes (the local mosquitto) do not notify systemd in the agent's name.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        watchdog_usec = _watchdog_usec(env, os.getpid() if pid is None else pid)
        if unset_environment and environ is None:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify (i.e. we run under systemd with Type=notify)."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """``WatchdogSec=`` in seconds, or None when systemd watches nothing for this process."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    def watchdog_ping_interval(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half of :meth:`watchdog_interval`, as advised."""
        interval = self.watchdog_interval()
        return None if interval is None else interval / 2

    # -- messages -----------------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status_field(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status_field(status))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1``; follow with :meth:`ready` once the reload is done.

        ``MONOTONIC_USEC`` is required by systemd 253+ for ``Type=notify-reload``; older
        versions ignore it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status_field(status))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(*_status_field(text))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (a long migration), ``EXTEND_TIMEOUT_USEC=``."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` as one datagram; True if sent, False if disabled or it failed."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(fields).encode("utf-8", errors="replace")
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.settimeout(SEND_TIMEOUT_S)
                self._socket = sock
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            self._close_socket()  # a fresh socket next time, in case this one is broken
            suppressed = self._limiter.allow("send")
            if suppressed is not None:
                logger.warning(
                    "cannot notify systemd at %s (%s): %s%s",
                    _shown(self._address),
                    fields[0].split("=", 1)[0],
                    exc,
                    f" ({suppressed} more failures not logged)" if suppressed else "",
                )
            return False
        return True

    def close(self) -> None:
        self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None
        except ValueError:
            logger.warning("ignoring WATCHDOG_PID=%r: not a number", watchdog_pid)
            return None
    try:
        usec = int(raw)
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC=%r: not a number", raw)
        return None
    return usec if usec > 0 else None


def _status_field(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # A newline would start a new field: a status must never be able to say READY=1.
    return ("STATUS=" + " ".join(text.splitlines()),)


def _shown(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


# --- the watchdog ---------------------------------------------------------------------------


class Watchdog:
    """Pings systemd every ``interval_s`` while all ``checks`` pass.

    ``interval_s`` is the ping interval: pass :meth:`Notifier.watchdog_ping_interval`.
    ``status`` (optional) gives the ``STATUS=`` text to restore once failing checks pass again.
    """

    def __init__(
        self,
        notifier: Notifier,
        checks: Sequence[HealthCheck],
        interval_s: float,
        *,
        status: Callable[[], str] | None = None,
        warn_interval_s: float = WARNING_INTERVAL_S,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.notifier = notifier
        self.checks = list(checks)
        self.interval_s = interval_s
        self._status = status
        self._limiter = _RateLimiter(warn_interval_s)
        self._task: asyncio.Task[None] | None = None
        self._failing: dict[str, str] = {}
        self.pings = 0
        """WATCHDOG=1 messages sent (for tests and diagnostics)."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def failing(self) -> dict[str, str]:
        """Checks that failed on the last round, name -> reason."""
        return dict(self._failing)

    def start(self) -> None:
        """Start pinging (call on the event loop); the first round runs at once."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="systemd-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check_once(self) -> bool:
        """Run every check; ping if all pass. Returns whether it pinged."""
        failures: dict[str, str] = {}
        for check in self.checks:
            name = check_name(check)
            ok, reason = await self._run_check(check, name)
            if not ok:
                failures[name] = reason or "failed"
        self._report(failures)
        if failures:
            return False
        if self.notifier.watchdog():
            self.pings += 1
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.check_once()
            due = started + self.interval_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            late = loop.time() - due
            if late > self.interval_s / 2:
                logger.warning(
                    "the event loop was blocked: the watchdog woke %.1f s late", late,
                    extra={"fields": {"late_s": round(late, 3)}},
                )

    async def _run_check(self, check: HealthCheck, name: str) -> CheckResult:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(_awaited(result), timeout=self.interval_s)
            ok, reason = result
        except TimeoutError:
            return False, f"{name} did not answer within {self.interval_s:g} s"
        except Exception as exc:
            return False, f"{name} raised {type(exc).__name__}: {exc}"
        return bool(ok), str(reason)

    def _report(self, failures: dict[str, str]) -> None:
        for name, reason in failures.items():
            suppressed = self._limiter.allow(name)
            if suppressed is not None:
                logger.warning(
                    "health check %s failed: %s; not pinging the systemd watchdog%s",
                    name, reason,
                    f" ({suppressed} more failures not logged)" if suppressed else "",
                    extra={"fields": {"check": name, "reason": reason}},
                )
        for name in set(self._failing) - set(failures):
            self._limiter.reset(name)
            logger.info("health check %s passes again", name, extra={"fields": {"check": name}})
        if failures != self._failing:
            if failures:
                self.notifier.status("unhealthy: " + "; ".join(failures.values()))
            else:
                self.notifier.status(self._status() if self._status is not None else "running")
        self._failing = failures


async def _awaited(awaitable: Awaitable[CheckResult]) -> CheckResult:
    return await awaitable
