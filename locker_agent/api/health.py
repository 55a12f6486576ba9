"""``/healthz``: is this locker able to serve a customer right now?

The same checks the systemd watchdog runs (event loop, database, hardware) decide it; the
broker's state is reported but never fails it, because the locker works offline.
"""

from __future__ import annotations

import asyncio
import inspect
import threading

from locker_agent.api.context import ApiContext
from locker_agent.api.schemas import Check, Health, MqttHealth
from locker_agent.app.health import CheckResult, HealthCheck, check_name

CHECK_TIMEOUT_S = 2.0


_running: dict[int, threading.Lock] = {}
_last: dict[int, CheckResult] = {}


def _once_at_a_time(check: HealthCheck) -> CheckResult:
    """Run a blocking check in a worker thread; callers arriving meanwhile get its last result.

    The database check waits on SQLite's write lock: on the event loop it would stall door
    handling, and many ``/healthz`` calls at once would stall it many times over.
    """
    lock = _running.setdefault(id(check), threading.Lock())
    if not lock.acquire(blocking=False):
        return _last.get(id(check), (False, "the previous check is still running"))
    try:
        result = check()
        assert not inspect.isawaitable(result)
        _last[id(check)] = result
        return result
    finally:
        lock.release()


async def _run(check: HealthCheck) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            if inspect.iscoroutinefunction(check):
                outcome: CheckResult = await check()
            else:
                outcome = await asyncio.to_thread(_once_at_a_time, check)
    except TimeoutError:
        return Check(ok=False, detail=f"no answer within {CHECK_TIMEOUT_S:g} s")
    except Exception as exc:
        return Check(ok=False, detail=f"check failed: {exc}")
    ok, detail = outcome
    return Check(ok=ok, detail=detail)


async def health(context: ApiContext) -> Health:
    checks = {check_name(check): await _run(check) for check in context.health_checks}
    connected = context.mqtt_connected
    return Health(
        locker_id=context.service.locker.locker_id,
        ok=context.service.accepting and all(c.ok for c in checks.values()),
        accepting_codes=context.service.accepting,
        checks=checks,
        mqtt=MqttHealth(
            configured=connected is not None,
            connected=connected() if connected is not None else None,
        ),
    )
