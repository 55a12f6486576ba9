"""The link under stress: mutual TLS, an agent offline, an agent SIGKILLed mid-stream."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from locker_agent.ctl.client import CtlError
from tests.cloud.harness import AgentProcess, AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import (  # noqa: F401 - fixtures
    BrokerFactory,
    MosquittoBroker,
    mosquitto,
    mosquitto_factory,
    password_file,
)
from tests.support.operator import locker_key
from tests.support.tls import make_rogue_client, make_tls

LOCKER = "test-locker"


def test_the_whole_link_runs_over_mutual_tls(
    tmp_path: Path, write_config: ConfigWriter, mosquitto_factory: BrokerFactory  # noqa: F811
) -> None:
    tls = make_tls(tmp_path / "pki")
    broker = mosquitto_factory(tls=tls, require_certificate=True)
    config = write_config(mqtt={
        "host": broker.host, "port": broker.port, "tls": True,
        "ca_file": str(tls.ca_file), "cert_file": str(tls.client_cert),
        "key_file": str(tls.client_key),
    })
    with Cloud(broker.host, broker.port, LOCKER, ca_file=tls.ca_file,
               cert_file=tls.client_cert, key_file=tls.client_key) as cloud, \
            AgentThread(config):
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth over TLS")
        reply = cloud.command("assign", {"assignment_id": "p-1", "pickup_code": "48291300",
                                         "size": "S"})
        assert reply["ok"], reply
        cloud.wait_for(lambda: any(e["type"] == "reserved" for e in cloud.events()))


def test_a_client_certificate_from_another_ca_is_refused_and_the_agent_keeps_running(
    tmp_path: Path, write_config: ConfigWriter, mosquitto_factory: BrokerFactory  # noqa: F811
) -> None:
    tls = make_tls(tmp_path / "pki")
    rogue = make_rogue_client(tmp_path / "rogue")
    broker = mosquitto_factory(tls=tls, require_certificate=True)
    config = write_config(mqtt={
        "host": broker.host, "port": broker.port, "tls": True, "ca_file": str(tls.ca_file),
        "cert_file": str(rogue.cert), "key_file": str(rogue.key),
        "reconnect_min_s": 0.1, "reconnect_max_s": 0.3,
    })
    with AgentThread(config) as agent:
        assert agent.agent is not None and agent.agent.link is not None
        link = agent.agent.link
        deadline = time.monotonic() + 10
        while link.stats.errors.get("connect", 0) < 3:
            assert time.monotonic() < deadline, "the agent did not keep retrying"
            time.sleep(0.05)
        assert not link.connected
        # the locker itself still works: its state is there and it answers locally
        assert agent.call(lambda: len(agent.agent.service.locker.compartments)) == 6  # type: ignore[union-attr]


def test_a_command_sent_while_the_locker_is_offline_arrives_when_it_is_back(
    write_config: ConfigWriter, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    config = write_config(mqtt={"host": mosquitto.host, "port": mosquitto.port,
                                "reconnect_min_s": 0.2, "reconnect_max_s": 0.5})
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as cloud:
        with AgentThread(config):  # first connection creates the persistent session
            cloud.wait_for(lambda: bool(cloud.on("status")))
        cloud.wait_for(lambda: cloud.on("status")[-1].json()["online"] is False)
        replies: list[dict[str, Any]] = []
        sender = threading.Thread(target=lambda: replies.append(cloud.command(
            "assign", {"assignment_id": "p-late", "pickup_code": "48291300", "size": "S"},
            timeout=30,
        )))
        sender.start()
        time.sleep(0.5)  # the command now waits at the broker, queued for the locker
        with AgentThread(config):
            sender.join(30)
            assert replies and replies[0]["ok"], replies
            cloud.wait_for(lambda: any(
                e["type"] == "reserved" and e["assignment_id"] == "p-late"
                for e in cloud.events()))


def test_sigkill_mid_stream_loses_no_event_and_applies_no_command_twice(
    tmp_path: Path, write_config: ConfigWriter, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    config = write_config(mqtt={"host": mosquitto.host, "port": mosquitto.port,
                                "reconnect_min_s": 0.2, "reconnect_max_s": 0.5})
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    total = 40
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as cloud:
        try:
            # the codes are sealed to the identity key the locker makes at its first start
            cloud.wait_for(lambda: locker_key(LOCKER) is not None, timeout=30,
                           what="the locker's identity key")
            envelopes = [
                cloud.client.envelope(LOCKER, "assign" if n % 2 == 0 else "cancel", {
                    "assignment_id": f"p-{n // 2}", "pickup_code": f"{10000000 + n // 2}",
                    "size": "S",
                } if n % 2 == 0 else {"assignment_id": f"p-{n // 2}", "reason": "test"})
                for n in range(total)
            ]
            replies: dict[int, dict[str, Any]] = {}
            for n, envelope in enumerate(envelopes):
                if n == total // 2:
                    agent.kill()  # mid-stream, with events still in the outbox
                    agent = AgentProcess(config, tmp_path / "agent.log").start()
                name = "assign" if n % 2 == 0 else "cancel"
                give_up = time.monotonic() + 40
                while n not in replies and time.monotonic() < give_up:
                    try:  # the cloud resends with the same id until answered
                        replies[n] = cloud.client.send(LOCKER, name, envelope, timeout=2)
                    except CtlError:
                        time.sleep(0.1)
            assert all(reply["ok"] for reply in replies.values()), replies
            # a late duplicate of every command changes nothing and gets the same answer
            for n in (0, 1, total - 2, total - 1):
                name = "assign" if n % 2 == 0 else "cancel"
                assert cloud.client.send(LOCKER, name, envelopes[n]) == replies[n]
            expected = {("reserved", f"p-{i}") for i in range(total // 2)} | {
                ("cancelled", f"p-{i}") for i in range(total // 2)}
            cloud.wait_for(
                lambda: {(e["type"], e["assignment_id"]) for e in cloud.unique_events()}
                >= expected, timeout=20, what="every event")
        finally:
            assert agent.terminate() == 0, agent.log()
    events = cloud.unique_events()
    lifecycle = [(e["type"], e["assignment_id"]) for e in events
                 if e["type"] in ("reserved", "cancelled")]
    assert sorted(lifecycle) == sorted(expected)  # each exactly once
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs), "events arrived out of seq order"
    assert seqs == list(range(1, len(seqs) + 1)), "a seq is missing"


def test_the_agent_authenticates_with_username_and_password(
    tmp_path: Path, write_config: ConfigWriter, mosquitto_factory: BrokerFactory,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = password_file(tmp_path / "passwd", {LOCKER: "locker-s3cret", "cloud": "cloud-pw"})
    broker = mosquitto_factory(password_file=users)
    config = write_config(mqtt={"host": broker.host, "port": broker.port,
                                "username": LOCKER, "password": "locker-s3cret"})
    with Cloud(broker.host, broker.port, LOCKER, username="cloud", password="cloud-pw") as cloud, \
            AgentThread(config):
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth with credentials")
        assert cloud.command("ping")["ok"]
    assert "locker-s3cret" not in caplog.text


def test_a_wrong_password_is_retried_with_backoff_not_fatal(
    tmp_path: Path, write_config: ConfigWriter, mosquitto_factory: BrokerFactory,  # noqa: F811
) -> None:
    users = password_file(tmp_path / "passwd", {LOCKER: "locker-s3cret"})
    broker = mosquitto_factory(password_file=users)
    config = write_config(mqtt={"host": broker.host, "port": broker.port, "username": LOCKER,
                                "password": "wrong", "reconnect_min_s": 0.1,
                                "reconnect_max_s": 0.2})
    with AgentThread(config) as agent:
        assert agent.agent is not None and agent.agent.link is not None
        link = agent.agent.link
        deadline = time.monotonic() + 10
        while link.stats.errors.get("connect", 0) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not link.connected
