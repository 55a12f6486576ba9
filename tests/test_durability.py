"""SIGKILL mid-burst: nothing committed is lost, nothing is half-applied."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from locker_agent.config import load_config
from locker_agent.domain.model import AssignmentStatus
from locker_agent.runtime.daemon import build_agent
from tests.conftest import REPO, ConfigWriter

# The status an assignment must have if this event is the last one recorded for it.
STATUS_AFTER = {
    "reserved": AssignmentStatus.RESERVED,
    "deposited": AssignmentStatus.DEPOSITED,
    "picked_up": AssignmentStatus.PICKED_UP,
}


def run_burst_until_killed(config: Path, min_commits: int) -> list[tuple[int, str, str]]:
    """Start the burst driver, SIGKILL it once ``min_commits`` events are reported committed."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "support" / "burst.py"), str(config), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    committed: list[tuple[int, str, str]] = []
    deadline = time.monotonic() + 60
    try:
        for line in process.stdout:
            if line.startswith("committed "):
                _, seq, event_type, assignment = line.split()
                committed.append((int(seq), event_type, assignment))
            if len(committed) >= min_commits:
                break
            assert time.monotonic() < deadline, "the burst driver is too slow"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return committed


@pytest.mark.parametrize("min_commits", [37, 150])
def test_sigkill_mid_burst_loses_nothing_committed(
    write_config: ConfigWriter, clean_env: None, min_commits: int
) -> None:
    config_path = write_config(auto_close=0.01)
    committed = run_burst_until_killed(config_path, min_commits)

    agent = build_agent(load_config(config_path))
    try:
        events = agent.store.all_events()
        by_seq = {e.seq: e for e in events}
        # every event the process reported committed is on disk, as reported
        for seq, event_type, assignment in committed:
            assert seq in by_seq, f"committed event {seq} was lost"
            assert by_seq[seq].type == event_type
            assert (by_seq[seq].assignment_id or "-") == assignment
        # no gap: a transaction either landed whole or not at all
        seqs = sorted(by_seq)
        assert seqs == list(range(1, len(seqs) + 1))

        # each assignment's state is exactly what its last lifecycle event says
        last_status: dict[str, AssignmentStatus] = {}
        for event in events:
            if event.assignment_id and event.type in STATUS_AFTER:
                last_status[event.assignment_id] = STATUS_AFTER[event.type]
        stored = {a.id: a for a in agent.store.assignments()}
        assert set(stored) == set(last_status)
        for assignment_id, status in last_status.items():
            assert stored[assignment_id].status is status, assignment_id

        # memory rebuilt from the file agrees with it, compartment by compartment
        locker = agent.service.locker
        for assignment in locker.assignments.values():
            assert not assignment.terminal
            assert assignment.compartment_id is not None
            assert assignment.id in locker.compartments[assignment.compartment_id].assignment_ids
        active = {a for a, s in last_status.items() if s is not AssignmentStatus.PICKED_UP}
        assert set(locker.assignments) == active

        # a restarted agent settles unlocks the kill cut off, without opening any door
        asyncio.run(_start_and_stop(agent))
        assert agent.simulator is not None and agent.simulator.pulses == []
        assert not agent.service.locker.intents or all(
            i.door_opened for i in agent.service.locker.intents.values()
        )
    finally:
        agent.store.close()


async def _start_and_stop(agent: object) -> None:
    from locker_agent.runtime.daemon import Agent

    assert isinstance(agent, Agent)
    await agent.start()
    await agent.stop()
