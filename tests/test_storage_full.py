"""A full disk (issue 15): codes are refused with a clear message, never a 500 and never with
free tries given back; health says so; the fact is recorded; the locker recovers by itself.

The disk is filled without privileges: the agent runs in a child process whose RLIMIT_FSIZE
is lowered to nothing once the write-ahead log has been emptied, so no file of the locker can
grow (SQLite then reports the write failure as a disk error, as on a card that is full).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from locker_agent.store.repository import RESERVE_BYTES, RESERVE_FILE
from tests.conftest import REPO, ConfigWriter

SCENARIO = r"""
import asyncio, json, resource, sys
from locker_agent.app.code_gate import Namespace
from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.config import load_config
from locker_agent.runtime.daemon import build_agent

async def main(config_path):
    agent = build_agent(load_config(config_path))
    await agent.start()
    service, report = agent.service, {}
    async def until(check, timeout=10):
        for _ in range(int(timeout * 50)):
            if check():
                return True
            await asyncio.sleep(0.02)
        return False
    try:
        now = service.now()
        service.apply(lambda: service.locker.reserve(
            "p-1", pickup_code="48291377", now=now, hold_seconds=3600,
            reservation_ttl_s=3600, size="S"))
        service.apply(lambda: service.locker.begin_deposit("p-1", actor="courier:t", now=now))
        await until(lambda: service.locker.assignments["p-1"].status.value == "deposited")
        report["reserve_at_start"] = agent.store.reserve_path.exists()
        # the disk fills up: nothing of the locker's may grow any more
        agent.store.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
        wrong = await service.submit_code(CodeEntry("keypad", "11112222"))
        right = await service.submit_code(CodeEntry("keypad", "48291377"))
        report["wrong"] = [wrong.ok, wrong.reason, wrong.message]
        report["right"] = [right.ok, right.reason]
        report["storage_full"] = service.storage_full is not None
        report["reserve_released"] = not agent.store.reserve_path.exists()
        from locker_agent.store.health import storage_writable
        check = storage_writable(agent.store, full=lambda: service.storage_full)
        report["health"] = list(check())
        report["intents"] = list(service.locker.intents)
        # room again: the locker notices by itself, records it, and takes codes again
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        report["recovered"] = await until(lambda: service.storage_full is None)
        report["health_after"] = list(check())
        again = await service.submit_code(CodeEntry("keypad", "48291377"))
        report["again"] = [again.ok, again.reason]
        await until(lambda: service.locker.assignments.get("p-1") is None
                    or service.locker.assignments["p-1"].status.value == "picked_up")
        report["events"] = [e.type for e in agent.store.all_events()]
        report["lockout"] = service.gate.consecutive_failures(Namespace.CUSTOMER, "keypad")
    finally:
        await agent.stop()
    print(json.dumps(report))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
def test_a_full_disk_refuses_codes_clearly_records_it_and_recovers(
    write_config: ConfigWriter, clean_env: None, tmp_path: Path,
) -> None:
    config = write_config(auto_close=0.2)
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(config)], capture_output=True, text=True,
        timeout=120, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["reserve_at_start"]
    # never a crash, never a 500: a clear refusal for the wrong and the right code alike
    assert report["wrong"][:2] == [False, "storage_full"]
    assert "try again later" in report["wrong"][2]
    assert report["right"] == [False, "storage_full"]
    assert report["storage_full"] and report["reserve_released"]
    assert report["health"][0] is False and "full" in report["health"][1]
    assert report["intents"] == []  # no door opened while nothing could be recorded
    assert report["recovered"] and report["health_after"][0] is True
    assert report["again"] == [True, None]
    # the fact was recorded (late: there was no room at the time) and its end too
    events = report["events"]
    assert events.index("storage_full") < events.index("storage_recovered")
    assert "picked_up" in events
    # the wrong code typed while the disk was full was refused before it was checked: no try
    # was spent that the disk could not remember
    assert report["lockout"] == 0
    assert (Path(tmp_path / "state" / RESERVE_FILE)).stat().st_size == RESERVE_BYTES
