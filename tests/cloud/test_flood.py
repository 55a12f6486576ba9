"""A flood of commands on the broker (issue 15): admitted at a bounded rate, the rest queued
or dropped unanswered, one alarm, nothing written, and the locker still serves its doors."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.cloud.admission import CommandAdmission
from locker_agent.domain.model import AssignmentStatus
from tests.cloud.harness import AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import MosquittoBroker, mosquitto  # noqa: F401 - fixture

LOCKER = "test-locker"
FLOOD = 3000


def test_the_bucket_admits_queues_then_drops_and_calls_a_flood_once() -> None:
    now = [0.0]
    admission: CommandAdmission[int] = CommandAdmission(
        rate_per_s=10, burst=5, queue_size=3, quiet_s=60, monotonic=lambda: now[0])
    outcomes = [admission.offer(n) for n in range(10)]
    assert [a for a, _ in outcomes] == [True] * 5 + [False] * 5
    assert admission.waiting == 3 and admission.stats.dropped == 2
    assert [f for _, f in outcomes].count(True) == 1  # one flood, however many drops
    now[0] += 0.25  # 2.5 tokens back: two queued commands go, oldest first
    assert admission.take_ready() == [5, 6]
    now[0] += 30
    # tokens are back, but the queue goes first: no command overtakes an older one
    assert admission.offer(99) == (False, False)
    assert admission.take_ready() == [7, 99]
    now[0] += 61  # quiet for longer than quiet_s: the next drop is a new flood
    for n in range(20):
        admission.offer(n)
    assert admission.stats.floods == 2


def test_a_flood_of_junk_commands_is_bounded_and_the_keypad_still_works(
    write_config: ConfigWriter, mosquitto: MosquittoBroker,  # noqa: F811
) -> None:
    config = write_config(
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.2,
              "max_commands_per_s": 20, "command_burst": 20, "command_queue_size": 50},
        auto_close=0.1,
    )
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as cloud, AgentThread(config) as thread:
        agent = thread.agent
        assert agent is not None and agent.link is not None
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth message")
        assert cloud.command("assign", {"assignment_id": "p-1", "pickup_code": "48291377",
                                        "size": "S"})["ok"]
        service = agent.service
        thread.call(lambda: service.apply(lambda: service.locker.begin_deposit(
            "p-1", actor="courier:test", now=service.now())))
        cloud.wait_for(lambda: thread.call(
            lambda: service.locker.assignments["p-1"].status) is AssignmentStatus.DEPOSITED,
            what="deposited")
        inbox_before = thread.call(lambda: agent.store.execute_sql("SELECT count(*) FROM inbox"))

        attacker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"evil-{uuid.uuid4().hex}")
        attacker.connect(mosquitto.host, mosquitto.port)
        attacker.loop_start()
        try:
            expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
            started = time.monotonic()
            for n in range(FLOOD):
                name = ("unlock_everything", "open", "assign", "ping")[n % 4]
                attacker.publish(f"lockers/{LOCKER}/cmd/{name}", json.dumps(
                    {"id": str(uuid.uuid4()), "expires_at": expires, "args": {"n": n}}), qos=0)
            # while it floods in, a customer types the right code
            outcome = thread.run(service.submit_code(CodeEntry("keypad", "48291377")))
            typed_in = time.monotonic() - started
            assert outcome.ok, outcome
        finally:
            attacker.loop_stop()
            attacker.disconnect()
        cloud.wait_for(lambda: agent.link is not None
                       and agent.link.stats.commands_received >= FLOOD * 0.9,
                       timeout=30, what="the flood to arrive")
        admission = agent.link.admission
        assert admission.stats.dropped > 0
        assert admission.stats.admitted < FLOOD / 2  # most of it never cost the locker work
        cloud.wait_for(lambda: bool([e for e in cloud.unique_events()
                                     if e["type"] == "command_flood"]), what="command_flood")
        assert len([e for e in cloud.unique_events() if e["type"] == "command_flood"]) == 1
        # nothing the flood sent was written down
        assert thread.call(
            lambda: agent.store.execute_sql("SELECT count(*) FROM inbox")) == inbox_before
        link = agent.link
        told, counted = thread.call(  # on the loop, where the link counts: one moment
            lambda: (link.telemetry().errors["commands_dropped"], admission.stats.dropped))
        assert told == counted
        assert typed_in < 10, typed_in
        cloud.wait_for(lambda: thread.call(
            lambda: service.locker.assignments.get("p-1") is None
            or service.locker.assignments["p-1"].status is AssignmentStatus.PICKED_UP),
            timeout=15, what="the pickup to complete")
        # and once the flood is over, the cloud is answered again
        time.sleep(1)
        assert cloud.command("ping", timeout=15)["ok"]


pytestmark = pytest.mark.usefixtures("clean_env")
