"""``/healthz``: is this locker able to serve a customer right now?

The same checks the systemd watchdog runs (event loop, database, hardware) decide it; the
broker's state is reported but never fails it, because the locker works offline.
"""

from __future__ import annotations

import asyncio
import inspect

from locker_agent.api.context import ApiContext
from locker_agent.api.schemas import Check, Health, MqttHealth
from locker_agent.systemd_notify import CheckResult, HealthCheck, check_name

CHECK_TIMEOUT_S = 2.0


async def _run(check: HealthCheck) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            result = check()
            outcome: CheckResult = await result if inspect.isawaitable(result) else result
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
        ok=context.service.accepting and all(c.ok for c in checks.values()),
        accepting_codes=context.service.accepting,
        checks=checks,
        mqtt=MqttHealth(
            configured=connected is not None,
            connected=connected() if connected is not None else None,
        ),
    )
