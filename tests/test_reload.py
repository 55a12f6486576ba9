"""SIGHUP reloads runtime policies without dropping state; a bad file is refused."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from locker_agent.config import load_config
from locker_agent.runtime.daemon import build_agent, reload_policies
from tests.cloud.harness import AgentProcess
from tests.conftest import ConfigWriter


def test_reload_applies_new_policies_and_keeps_state(
    write_config: ConfigWriter, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(mqtt={"host": "127.0.0.1", "port": 1})
    agent = build_agent(load_config(config))
    try:
        service = agent.service
        service.apply(lambda: service.locker.reserve(
            "p-1", pickup_code="48291300", size="S", now=service.now(),
            hold_seconds=3600, reservation_ttl_s=3600))
        text = config.read_text().replace("lock_pulse_ms = 50", "lock_pulse_ms = 120")
        text = text.replace("[policies]", "[policies]\nremote_open_limit = 2")
        config.write_text(text)
        assert reload_policies(agent, config)
        assert service.unlock_policy.pulse_s == pytest.approx(0.12)
        assert agent.processor is not None and agent.processor.policies.remote_open_limit == 2
        assert "p-1" in service.locker.assignments  # nothing dropped

        config.write_text(text.replace("lock_pulse_ms = 120", "lock_pulse_ms = 9000"))
        assert not reload_policies(agent, config)
        assert service.unlock_policy.pulse_s == pytest.approx(0.12)  # the old policy stays
        assert "policies.lock_pulse_ms" in caplog.text

        config.write_text(text.replace('locker_id = "test-locker"', 'locker_id = "renamed"'))
        assert reload_policies(agent, config)
        assert agent.config.locker_id == "test-locker"
        assert "need a restart" in caplog.text and "locker_id" in caplog.text
    finally:
        agent.store.close()


def test_sighup_to_the_running_daemon(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config()
    daemon = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        deadline = time.monotonic() + 30
        while "locker started" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        assert daemon.process is not None
        config.write_text(config.read_text().replace("lock_pulse_ms = 50", "lock_pulse_ms = 80"))
        os.kill(daemon.process.pid, signal.SIGHUP)
        while "reloaded policies" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        config.write_text("this is = not [valid toml")
        os.kill(daemon.process.pid, signal.SIGHUP)
        while "reload refused" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        assert daemon.process.poll() is None  # still running on the old config
    finally:
        assert daemon.terminate() == 0, daemon.log()
    assert "Traceback" not in daemon.log()
