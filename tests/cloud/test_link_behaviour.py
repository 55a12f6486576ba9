"""Smaller promises of the link: backoff with jitter, resubscription, callbacks that fail."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from locker_agent.cloud.link import backoff_delay
from locker_agent.ctl.client import CtlError
from tests.cloud.harness import AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import BrokerFactory, mosquitto_factory  # noqa: F401 - fixture

LOCKER = "test-locker"


def test_backoff_grows_to_its_cap_and_is_spread_by_jitter() -> None:
    rng = random.Random(7).random
    first = [backoff_delay(0, 1.0, 120.0, rng) for _ in range(500)]
    assert all(0.5 <= d <= 1.0 for d in first)
    later = [backoff_delay(20, 1.0, 120.0, rng) for _ in range(500)]
    assert all(60.0 <= d <= 120.0 for d in later)
    # a fleet reconnecting at once is spread over the whole upper half of the window
    assert statistics.pstdev(later) > 10
    assert [backoff_delay(n, 1.0, 120.0, lambda: 1.0) for n in range(9)] == [
        1, 2, 4, 8, 16, 32, 64, 120, 120]


@pytest.fixture
def plain_broker(mosquitto_factory: BrokerFactory):  # type: ignore[no-untyped-def]  # noqa: F811
    return mosquitto_factory(persistence=False)


def test_subscriptions_are_renewed_when_the_broker_forgot_the_session(
    write_config: ConfigWriter, plain_broker  # type: ignore[no-untyped-def]
) -> None:
    config = write_config(mqtt={"host": plain_broker.host, "port": plain_broker.port,
                                "reconnect_min_s": 0.1, "reconnect_max_s": 0.3})
    with AgentThread(config) as agent, Cloud(plain_broker.host, plain_broker.port,
                                             LOCKER) as cloud:
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth (after subscribing)")
        assert cloud.command("ping")["ok"]
        plain_broker.kill()
        plain_broker.start()  # no persistence: every session and subscription is gone
        assert agent.agent is not None and agent.agent.link is not None
        link = agent.agent.link
        cloud.wait_for(lambda: link.stats.connects >= 2, what="the agent reconnected")
        cloud.wait_for(lambda: cloud.client.connected, what="the cloud reconnected")
        # a command that reaches the broker before the locker has resubscribed is dropped by
        # the broker (no session, no subscriber); the cloud resends with the same id
        envelope = cloud.client.envelope(LOCKER, "ping")
        reply = None
        for _ in range(5):
            try:
                reply = cloud.client.send(LOCKER, "ping", envelope, timeout=2)
                break
            except CtlError:
                continue
        assert reply is not None and reply["ok"]
        # and the retained state is published again for dashboards that subscribe now
        assert cloud.client.collect(f"lockers/{LOCKER}/status", 0.5)[-1].json()["online"]


def test_an_exception_in_a_callback_does_not_stop_the_network_loop(
    write_config: ConfigWriter, plain_broker, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    config = write_config(mqtt={"host": plain_broker.host, "port": plain_broker.port})
    with AgentThread(config) as agent, Cloud(plain_broker.host, plain_broker.port,
                                             LOCKER) as cloud:
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth (after subscribing)")
        assert agent.agent is not None and agent.agent.processor is not None
        processor = agent.agent.processor
        real_handle = processor.handle
        calls = {"n": 0}

        def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("a bug in a callback")
            return real_handle(*args, **kwargs)

        monkeypatch.setattr(processor, "handle", flaky)
        with pytest.raises(CtlError):
            cloud.command("ping", timeout=1.5)
        assert cloud.command("ping")["ok"]
        assert agent.agent.link is not None and agent.agent.link.connected


def test_telemetry_reports_health(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config(mqtt={"host": "127.0.0.1", "port": 1})
    with AgentThread(config) as agent:
        assert agent.agent is not None and agent.agent.link is not None
        telemetry = agent.call(agent.agent.link.telemetry)
        assert telemetry.free_by_size == {"S": 3, "M": 1, "L": 1, "XL": 1}
        assert telemetry.outbox_depth == 0
        assert telemetry.uptime_s >= 0
        assert "commands_refused" in telemetry.errors
