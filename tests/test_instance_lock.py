"""One agent per state directory: a second one refuses to start; read-only tools still work."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from locker_agent.config import load_config
from locker_agent.runtime.daemon import build_agent
from locker_agent.runtime.errors import StartupError
from tests.cloud.harness import AgentProcess
from tests.conftest import BIN, ConfigWriter


def test_a_second_agent_on_the_same_state_refuses_to_start(write_config: ConfigWriter) -> None:
    config = load_config(write_config())
    first = build_agent(config)
    try:
        with pytest.raises(StartupError, match="another locker-agent is using"):
            build_agent(config)
    finally:
        first.store.close()
    build_agent(config).store.close()  # released: the next one starts


def test_the_lock_dies_with_the_process_and_status_reads_alongside(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    path = write_config()
    daemon = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        deadline = time.monotonic() + 30
        while "locker started" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        status = subprocess.run(
            [str(BIN / "locker-agent"), "status", "--config", str(path)],
            capture_output=True, text=True, timeout=60,
        )
        assert status.returncode == 0, status.stderr
        with pytest.raises(StartupError):
            build_agent(load_config(path))
    finally:
        daemon.kill()  # SIGKILL: the kernel releases the lock
    build_agent(load_config(path)).store.close()
