"""The cloud-link guarantees that matter, on Mosquitto and on RabbitMQ (a clustering broker).

The same agent and the same ``locker-ctl`` client run unchanged on both; RabbitMQ 3.10 speaks
MQTT 3.1.1 only, so there the agent runs with ``mqtt.protocol = "3.1.1"``. On every broker:
a command is applied at most once; events arrive in seq order with none lost while the
broker was down (crashed, then restarted); presence is a retained birth and a Last Will.

One broker serves all the tests of a parametrisation (RabbitMQ takes seconds to boot); each
test uses its own locker id so nothing one test leaves on the broker reaches another.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from locker_agent.ctl import cli as ctl
from locker_agent.ctl.client import ConnectionOptions, FleetClient, Received
from tests.cloud.harness import AgentProcess, AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import MosquittoBroker
from tests.support.rabbitmq import RabbitMQBroker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Broker:
    """A running broker of either kind, and the MQTT version the lockers speak to it."""

    kind: str
    protocol: str
    server: MosquittoBroker | RabbitMQBroker

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def crash(self) -> None:
        """Kill the broker with what it had acknowledged already on disk."""
        if isinstance(self.server, MosquittoBroker):
            self.server.save()  # Mosquitto persists on a timer; RabbitMQ as it goes
        self.server.kill()

    def start(self) -> None:
        self.server.start()

    def agent_mqtt(self, **extra: object) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "protocol": self.protocol,
                "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **extra}

    def cloud(self, locker_id: str) -> Cloud:
        return Cloud(self.host, self.port, locker_id, protocol=self.protocol)


@pytest.fixture(
    scope="module",
    params=[("mosquitto", "5"), ("mosquitto", "3.1.1"), ("rabbitmq", "3.1.1")],
    ids=["mosquitto-mqtt5", "mosquitto-mqtt311", "rabbitmq-mqtt311"],
)
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Broker]:
    kind, protocol = request.param
    workdir = tmp_path_factory.mktemp(kind)
    server: MosquittoBroker | RabbitMQBroker
    if kind == "mosquitto":
        server = MosquittoBroker(workdir)
        server.start()
    else:
        server = RabbitMQBroker(workdir)
        server.start()
    try:
        yield Broker(kind, protocol, server)
    finally:
        if isinstance(server, RabbitMQBroker):
            server.close()
        else:
            server.stop()


def locker_id(broker: Broker, what: str) -> str:
    return f"{what}-{broker.kind}-{broker.protocol.replace('.', '')}"


def subscribed(cloud: Cloud) -> Cloud:
    """Return once the broker has granted the cloud's subscription (SUBACKs come in order).

    RabbitMQ 3.10 delivers no retained message to a wildcard subscription, so the cloud
    must be listening before the locker's birth is published.
    """
    cloud.client.subscribe_all([f"lockers/{cloud.locker_id}/status"], lambda _m: None)
    return cloud


def retained(broker: Broker, topic: str) -> list[Received]:
    """What a newcomer subscribing to exactly ``topic`` is handed at once."""
    options = ConnectionOptions(host=broker.host, port=broker.port, protocol=broker.protocol)
    with FleetClient(options) as client:
        seen: list[Received] = []
        client.subscribe_all([topic], seen.append)
        time.sleep(0.5)
        return [m for m in seen if m.retain]


def test_a_command_is_applied_at_most_once(
    broker: Broker, write_config: ConfigWriter, capsys: pytest.CaptureFixture[str]
) -> None:
    locker = locker_id(broker, "once")
    config = write_config(locker_id=locker, mqtt=broker.agent_mqtt())
    with broker.cloud(locker) as cloud, AgentThread(config) as agent:
        subscribed(cloud)
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth")
        envelope = cloud.client.envelope(
            locker, "assign", {"assignment_id": "p-1", "pickup_code": "48291375", "size": "S"})
        first = cloud.client.send(locker, "assign", envelope)
        again = cloud.client.send(locker, "assign", envelope)  # a redelivery, same id
        assert first["ok"], first["error"]
        assert again == first
        assert agent.agent is not None
        store = agent.agent.store
        cloud.wait_for(lambda: store.outbox_depth() == 0, what="outbox drained")
        reserved = [e for e in cloud.unique_events() if e["type"] == "reserved"]
        assert [e["assignment_id"] for e in reserved] == ["p-1"]
        held = agent.call(lambda: [a.id for a in agent.agent.service.locker.assignments.values()])  # type: ignore[union-attr]
        assert held == ["p-1"]

        # locker-ctl itself, unchanged, on this broker
        status = ctl.main(["--host", broker.host, "--port", str(broker.port), "--protocol",
                           broker.protocol, "send", locker, "ping"])
        assert status == ctl.EXIT_OK, capsys.readouterr()
        assert '"ok": true' in capsys.readouterr().out


def test_events_arrive_in_order_and_none_is_lost_while_the_broker_is_down(
    broker: Broker, write_config: ConfigWriter
) -> None:
    locker = locker_id(broker, "events")
    config = write_config(locker_id=locker, mqtt=broker.agent_mqtt())
    with broker.cloud(locker) as cloud, AgentThread(config) as agent:
        subscribed(cloud)
        assert agent.agent is not None
        service, store = agent.agent.service, agent.agent.store

        def make_events(count: int) -> None:
            """Take A06 out of service and back, ``count`` transitions, at the locker."""
            def toggle(in_service: bool) -> Any:
                return service.locker.set_compartment_service(
                    "A06", in_service=in_service, reason=None if in_service else "cross-broker",
                    now=service.now())

            def run() -> None:
                for n in range(count):
                    service.apply(functools.partial(toggle, n % 2 == 1))
            agent.call(run)

        def seqs() -> list[int]:
            return [e["seq"] for e in cloud.unique_events()]

        make_events(6)
        before = store.last_seq()
        cloud.wait_for(lambda: before in seqs(), what="the first events")
        cloud.wait_for(lambda: store.outbox_depth() == 0, what="outbox drained")

        broker.crash()
        make_events(40)  # the locker keeps working; its events wait in the outbox
        last = store.last_seq()
        assert store.outbox_depth() >= 40
        broker.start()

        cloud.wait_for(lambda: last in seqs(), timeout=60, what="every event after the restart")
        cloud.wait_for(lambda: store.outbox_depth() == 0, what="outbox drained")
        received = seqs()
        assert received == sorted(received), f"out of order: {received}"
        assert received == list(range(received[0], last + 1)), f"a seq is missing: {received}"
        assert received[0] <= before - 5


def test_presence_is_a_retained_birth_and_a_last_will(
    broker: Broker, write_config: ConfigWriter, tmp_path: Path
) -> None:
    locker = locker_id(broker, "presence")
    config = write_config(locker_id=locker, mqtt=broker.agent_mqtt(keepalive_s=5))
    with broker.cloud(locker) as cloud:
        subscribed(cloud)
        agent = AgentProcess(config, tmp_path / "agent.log").start()
        try:
            cloud.wait_for(lambda: _presence(cloud) is True, timeout=30, what="birth")
            kept = retained(broker, f"lockers/{locker}/status")
            assert kept and kept[-1].json()["online"] is True, kept
            boot_id = kept[-1].json()["boot_id"]
        finally:
            agent.kill()  # SIGKILL: no goodbye; the broker publishes the Last Will
        cloud.wait_for(lambda: _presence(cloud) is False, timeout=20, what="the Last Will")
        will = cloud.on("status")[-1].json()
        assert will["locker_id"] == locker
        kept = retained(broker, f"lockers/{locker}/status")
        assert kept and kept[-1].json()["online"] is False, kept
        assert kept[-1].json()["boot_id"] == boot_id, agent.log()


def _presence(cloud: Cloud) -> Any:
    messages = cloud.on("status")
    return messages[-1].json().get("online") if messages else None
