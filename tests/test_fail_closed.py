"""Fail closed: damaged or missing state never opens a door or silently loses codes; wall-clock
jumps never expire a parcel early."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from locker_agent.app import service as service_module
from locker_agent.config import load_config
from locker_agent.domain.model import AssignmentStatus, CompartmentState
from locker_agent.runtime.daemon import build_agent
from tests.conftest import ConfigWriter

HOUR = 3600.0


def make_locker_with_a_parcel(config: Path) -> None:
    agent = build_agent(load_config(config))
    service = agent.service
    service.apply(lambda: service.locker.reserve(
        "p-1", pickup_code="48291300", size="S", now=service.now(),
        hold_seconds=HOUR, reservation_ttl_s=HOUR))
    agent.store.close()


def assert_failed_closed(config: Path) -> list[str]:
    agent = build_agent(load_config(config))
    try:
        locker = agent.service.locker
        assert all(locker.state_of(c) is CompartmentState.OUT_OF_SERVICE
                   for c in locker.compartments)
        events = agent.store.all_events()
        lost = [e for e in events if e.type == "state_lost"]
        assert len(lost) == 1
        assert agent.simulator is not None and agent.simulator.pulses == []
        assert locker.intents == {}
        return [str(lost[0].data.get("kept_aside"))]
    finally:
        agent.store.close()


def test_a_damaged_database_is_kept_aside_and_the_locker_starts_closed(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    config = write_config()
    make_locker_with_a_parcel(config)
    database = tmp_path / "state" / "locker.db"
    raw = bytearray(database.read_bytes())
    raw[100:4096] = b"\xff" * (4096 - 100)  # scribble over the header page
    database.write_bytes(bytes(raw))
    (kept,) = assert_failed_closed(config)
    assert Path(kept).exists() and Path(kept).read_bytes()[100:200] == b"\xff" * 100
    assert Path(kept).name.startswith("locker.db.damaged-")


def test_garbage_instead_of_a_database_fails_closed(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    config = write_config()
    make_locker_with_a_parcel(config)
    (tmp_path / "state" / "locker.db").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / "state" / f"locker.db{suffix}").unlink(missing_ok=True)
    assert_failed_closed(config)


def test_a_vanished_database_beside_the_secret_fails_closed(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    config = write_config()
    make_locker_with_a_parcel(config)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "state" / f"locker.db{suffix}").unlink(missing_ok=True)
    assert assert_failed_closed(config) == ["None"]


def test_a_first_start_is_not_a_loss(write_config: ConfigWriter) -> None:
    agent = build_agent(load_config(write_config()))
    try:
        assert not [e for e in agent.store.all_events() if e.type == "state_lost"]
        assert agent.service.locker.state_of("A01") is CompartmentState.FREE
    finally:
        agent.store.close()


@pytest.mark.parametrize("jump", [timedelta(days=30), timedelta(days=-30)])
def test_a_wall_clock_jump_does_not_expire_a_parcel(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch, jump: timedelta
) -> None:
    """Hold periods run on the monotonic clock; only the event timestamps follow the wall."""
    monkeypatch.setattr(service_module, "TICK_INTERVAL_S", 0.01)
    fake_monotonic = {"now": 1000.0}

    async def scenario() -> None:
        agent = build_agent(load_config(write_config()))
        service = agent.service
        service._monotonic = lambda: fake_monotonic["now"]  # type: ignore[method-assign]
        real_now = service._now
        service.apply(lambda: service.locker.reserve(
            "p-1", pickup_code="48291300", size="S", now=service.now(),
            hold_seconds=HOUR, reservation_ttl_s=2 * HOUR))
        await agent.start()
        try:
            service._now = lambda: real_now() + jump  # type: ignore[method-assign]
            await asyncio.sleep(0.2)  # many ticks with the wall clock far off
            assert service.locker.assignments["p-1"].status is AssignmentStatus.RESERVED
            fake_monotonic["now"] += 2 * HOUR + 1  # real time passes: now it lapses
            await asyncio.sleep(0.2)
            assert "p-1" not in service.locker.assignments
            assert agent.store.archived_status("p-1") is AssignmentStatus.CANCELLED
        finally:
            await agent.stop()

    asyncio.run(scenario())
