"""`locker-agent hw-test` on the simulated backend: a working locker passes, faults are named."""

from __future__ import annotations

import asyncio
import subprocess

from locker_agent.commissioning import hw_test
from locker_agent.config import load_config
from locker_agent.daemon import build_agent
from tests.conftest import BIN, ConfigWriter


def test_hw_test_passes_a_working_locker_and_records_every_opening(
    write_config: ConfigWriter,
) -> None:
    path = write_config(auto_close=0.05)
    result = subprocess.run(
        [str(BIN / "locker-agent"), "hw-test", "--config", str(path), "--close-timeout", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed, 0 failed" in result.stdout
    agent = build_agent(load_config(path))
    try:
        opened = [e for e in agent.store.all_events() if e.type == "unlock_requested"]
        assert len(opened) == 6
        assert {(e.data["actor"], e.data["reason"]) for e in opened} == {("installer", "hw-test")}
    finally:
        agent.store.close()


def test_hw_test_names_a_jammed_lock_and_a_dead_sensor(write_config: ConfigWriter) -> None:
    async def scenario() -> None:
        agent = build_agent(load_config(write_config(auto_close=False)), cloud=False)
        await agent.start()
        try:
            assert agent.simulator is not None
            agent.simulator.jam("A01")  # the relay clicks, the latch never releases
            lines: list[str] = []
            results = await hw_test(agent, ["A01", "A02"], open_timeout_s=0.5,
                                    close_timeout_s=0.3, out=lines.append)
            # A02 opened but nobody closed it: as if the door sensor never reported it closed
            assert [r.passed for r in results] == [False, False]
            assert "did not open" in str(results[0].problem)
            assert results[1].opened_after_s is not None
            assert "sensor did not report the door closed" in str(results[1].problem)
            assert "0 passed, 2 failed" in lines[-1]
        finally:
            await agent.stop()

    asyncio.run(scenario())


def test_hw_test_fails_with_exit_1(write_config: ConfigWriter) -> None:
    path = write_config(auto_open=False)
    result = subprocess.run(
        [str(BIN / "locker-agent"), "hw-test", "--config", str(path), "A03",
         "--open-timeout", "0.3"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "FAIL: the door did not open" in result.stdout
