"""`locker-agent hw-test` on the simulated and mock-GPIO backends: faults are named."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from locker_agent.app.safety import SafeLocks
from locker_agent.config import load_config
from locker_agent.hardware.gpio import GpioLocker
from locker_agent.ops.commissioning import CompartmentResult, hw_test, report
from locker_agent.runtime.daemon import build_agent
from tests.conftest import BIN, ConfigWriter
from tests.hardware.physics import LockerPhysics

LOCKS = {"G01": 17, "G02": 22, "G03": 24}
SENSORS = {"G01": 27, "G02": 23, "G03": 25}


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


def test_hw_test_on_mock_gpio_pins_passes_working_doors_and_fails_a_dead_one(
    tmp_path: Path,
) -> None:
    """The gpio backend on gpiozero's MockFactory (``pin_factory = "mock"``), with physics:
    a pulse on a relay springs its reed switch open and a person shuts the door again."""
    config = tmp_path / "locker.toml"
    lines = [
        'locker_id = "mock-gpio"', f'state_dir = "{tmp_path / "state"}"',
        "[hardware]", 'backend = "gpio"', "[hardware.gpio]", 'pin_factory = "mock"',
        "door_debounce_ms = 10", "door_poll_interval_s = 0.05",
        "[mqtt]", "enabled = false", "[policies]", "lock_pulse_ms = 80", "unlock_gap_ms = 0",
    ]
    for cid in LOCKS:
        lines += ["[[compartments]]", f'id = "{cid}"', 'size = "S"',
                  f"lock = {LOCKS[cid]}", f"sensor = {SENSORS[cid]}"]
    config.write_text("\n".join(lines) + "\n")

    async def scenario() -> list[CompartmentResult]:
        agent = build_agent(load_config(config), cloud=False)
        assert isinstance(agent.locks, SafeLocks) and isinstance(agent.locks.driver, GpioLocker)
        physics = LockerPhysics(agent.locks.driver.pin_factory, LOCKS, SENSORS,
                                close_after_s=0.2)
        physics.jammed.add("G02")  # its relay clicks, its door never opens
        await agent.start()
        try:
            return await hw_test(agent, open_timeout_s=0.6, close_timeout_s=2,
                                 out=lambda line: None)
        finally:
            await agent.stop()
            physics.close()

    results = asyncio.run(scenario())
    assert [(r.compartment_id, r.passed) for r in results] == [
        ("G01", True), ("G02", False), ("G03", True)
    ]
    assert "did not open" in str(results[1].problem)
    assert "G02" in report(results) and "2 passed, 1 failed" in report(results)
