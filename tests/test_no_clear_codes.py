"""No code in clear anywhere: not in the database, its WAL, the logs, or what the locker sends.

Every flow runs with known codes — a pickup code, a return code, a courier code, a signed
pickup token, and an attacker's wrong guesses — through the cloud commands that bring them
and the inputs that use them. Then every byte the locker wrote or published is searched.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.contract.tokens import sign_pickup_token
from locker_agent.ctl.client import ConnectionOptions, FleetClient, Received
from locker_agent.domain.model import AssignmentStatus, DoorState
from tests.cloud.harness import AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import MosquittoBroker, mosquitto  # noqa: F401 - fixture

LOCKER = "test-locker"
PICKUP = "73915582"
SECOND_PICKUP = "Pk7Xq2Lm9Z"
RETURN = "RtN55291Q"
COURIER = "Cour1erD4y"
WRONG = ("40404040", "ZzWr0ngG3ss", "31337000")
WEAK = "Qw7Rt2"
"""Refused by the locker as too short: the refusal must not echo it either."""
KEY = Ed25519PrivateKey.generate()


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_codes_never_appear_in_the_database_the_logs_or_mqtt(
    write_config: ConfigWriter,
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    clean_env: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    raw_key = KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    config = write_config(
        auto_close=0.2,
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.2},
    )
    config.write_text(config.read_text().replace(
        "[[compartments]]",
        f'[tokens]\npublic_keys = ["{base64.b64encode(raw_key).decode()}"]\n\n[[compartments]]',
        1,
    ))
    everything: list[Received] = []  # a subscriber to '#': commands, replies, all of it
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as cloud, AgentThread(config) as thread, \
            FleetClient(ConnectionOptions(host=mosquitto.host, port=mosquitto.port)) as spy:
        spy.subscribe("#", everything.append)
        agent = thread.agent
        assert agent is not None
        until(lambda: bool(cloud.on("status")))
        for args in (
            {"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S", "barcode": "BC-1"},
            {"assignment_id": "p-2", "pickup_code": SECOND_PICKUP, "size": "M",
             "barcode": "BC-2"},
        ):
            assert cloud.command("assign", args)["ok"]
        assert cloud.command("announce_return",
                             {"assignment_id": "r-1", "size": "S", "return_code": RETURN})["ok"]
        assert cloud.command("grant_courier", {"courier_id": "dhl-1", "code": COURIER})["ok"]
        # a command refused for its code must not echo it either
        refused = cloud.command("assign", {"assignment_id": "p-3", "pickup_code": WEAK,
                                           "size": "S"})
        assert not refused["ok"]

        desk = agent.courier_desk
        assert desk is not None
        signed_in = thread.run(desk.sign_in(CodeEntry("kiosk", COURIER)))
        assert signed_in.ok and signed_in.courier is not None
        session = signed_in.courier.session_id
        for barcode in ("BC-1", "BC-2"):
            assert thread.run(desk.deposit(session, barcode)).ok
            until(lambda: not thread.call(lambda: bool(agent.service.locker.intents)))

        def status(assignment_id: str) -> AssignmentStatus | None:
            live = agent.service.locker.assignments.get(assignment_id)
            return live.status if live else agent.store.archived_status(assignment_id)

        assert thread.call(lambda: status("p-1")) is AssignmentStatus.DEPOSITED
        for guess in WRONG:
            assert not thread.run(agent.service.submit_code(CodeEntry("keypad", guess))).ok
        assert thread.run(agent.service.submit_code(CodeEntry("keypad", PICKUP))).ok
        token = sign_pickup_token(KEY, locker_id=LOCKER, assignment_id="p-2",
                                  expires_at=agent.service.now() + timedelta(hours=1))
        assert thread.run(agent.service.submit_code(CodeEntry("scanner", token))).ok
        assert thread.run(agent.service.submit_code(CodeEntry("scanner", RETURN))).ok
        until(lambda: thread.call(
            lambda: not agent.service.locker.intents
            and all(c.door is not DoorState.OPEN
                    for c in agent.service.locker.compartments.values())))
        assert thread.call(lambda: status("p-1")) is AssignmentStatus.PICKED_UP
        assert thread.call(lambda: status("p-2")) is AssignmentStatus.PICKED_UP
        assert thread.call(lambda: status("r-1")) is AssignmentStatus.DEPOSITED
        assert thread.run(desk.collect_returns(session)).ok
        until(lambda: thread.call(lambda: status("r-1")) is AssignmentStatus.COLLECTED)
        assert cloud.command("sync")["ok"]
        until(lambda: any(e["type"] == "return_collected" for e in cloud.events()))
        published = [m for m in cloud.messages if not m.topic.startswith(
            f"lockers/{LOCKER}/cmd/")]
        database = agent.config.state_dir / "locker.db"

    secrets = (PICKUP, SECOND_PICKUP, RETURN, COURIER, token, WEAK, *WRONG)
    stored = b"".join(
        path.read_bytes() for path in database.parent.iterdir()
        if path.is_file() and path.name.startswith(database.name)
    )
    assert len(stored) > 10_000, "the database files were not found"
    sent = b"\n".join(m.topic.encode() + b" " + m.payload for m in published)
    seen = b"\n".join(m.topic.encode() + b" " + m.payload for m in everything)
    # the spy saw the commands with their codes (sealed) as well as what the locker sent
    assert b"/cmd/assign" in seen and b"sealed:" in seen and b"return_collected" in seen
    assert b"return_collected" in sent and b"picked_up" in sent
    logged = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert "code refused" in logged
    # the searches work: what is meant to be there is found
    assert b"BC-1" in stored and b"dhl-1" in sent and "dhl-1" in logged
    for secret in secrets:
        needle = secret.encode()
        assert needle not in stored, f"a code is in the database files: {secret[:3]}…"
        assert needle not in sent, f"a code was published over MQTT: {secret[:3]}…"
        assert needle not in seen, f"a subscriber to '#' saw a code: {secret[:3]}…"
        assert secret not in logged, f"a code is in the logs: {secret[:3]}…"
