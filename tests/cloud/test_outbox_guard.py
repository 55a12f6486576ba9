"""The outbox stays within its bound offline, and never drops an event without saying so."""

from __future__ import annotations

from pathlib import Path

from locker_agent.cloud.outbox_guard import OutboxGuard
from locker_agent.config import load_config
from locker_agent.runtime.daemon import build_agent
from tests.conftest import ConfigWriter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 5.0  # every check is past the check interval
        return self.now


def emit(agent_service: object, count: int) -> None:
    from locker_agent.app.service import LockerService

    assert isinstance(agent_service, LockerService)
    locker = agent_service.locker
    for _ in range(count):  # each toggle of A06 is one event
        turn_on = not locker.compartments["A06"].in_service
        agent_service.apply(lambda s=turn_on: locker.set_compartment_service(
            "A06", in_service=s, reason=None if s else "test", now=agent_service.now()))


def test_alarm_at_80_percent_then_overflow_names_the_lost_seqs(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    agent = build_agent(load_config(write_config(mqtt={"host": "127.0.0.1", "port": 1})))
    try:
        service, store = agent.service, agent.store
        guard = OutboxGuard(service, 1000, monotonic=FakeClock())
        emit(service, 799)
        guard.check()
        assert not [e for e in store.all_events() if e.type == "outbox_high"]
        emit(service, 1)
        guard.check()
        guard.check()
        high = [e for e in store.all_events() if e.type == "outbox_high"]
        assert len(high) == 1 and high[0].data["depth"] == 800

        emit(service, 300)
        guard.check()
        overflow = [e for e in store.all_events() if e.type == "outbox_overflow"]
        assert len(overflow) == 1
        data = overflow[0].data
        assert data["first_seq"] == 1 and data["dropped"] == data["last_seq"]
        assert store.outbox_depth() <= 1001  # the bound, plus the overflow event itself
        # the overflow event itself is kept, and the audit trail still has everything
        assert store.execute_sql("SELECT count(*) FROM audit")[0][0] >= 1101
    finally:
        store.close()
