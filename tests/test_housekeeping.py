"""The running agent applies the retention policy by itself."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from locker_agent.config import load_config
from locker_agent.runtime import daemon
from locker_agent.runtime.daemon import build_agent
from tests.conftest import ConfigWriter


def test_the_agent_runs_retention_off_the_loop_and_keeps_unpublished_events(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "RETENTION_FIRST_RUN_S", 0.05)
    agent = build_agent(load_config(write_config()))
    service, store = agent.service, agent.store
    for in_service in (False, True, False):
        service.apply(lambda s=in_service: service.locker.set_compartment_service(
            "A06", in_service=s, reason=None if s else "test", now=service.now()))
    first, second, third = (e.seq for e in store.all_events())
    store.mark_published([first, second], service.now() - timedelta(days=30))

    async def scenario() -> None:
        await agent.start()
        try:
            for _ in range(100):
                if len(store.all_events()) == 1:
                    break
                await asyncio.sleep(0.05)
        finally:
            await agent.stop()

    asyncio.run(scenario())
    reopened = build_agent(agent.config)
    try:
        assert [e.seq for e in reopened.store.all_events()] == [third]  # never an unpublished one
    finally:
        reopened.store.close()
