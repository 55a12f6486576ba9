"""An attacker on the broker: full publish and subscribe rights on ``lockers/#``, no operator key.

Each scenario that opened doors, leaked codes or loosened a policy before (issue 14) runs
against a real Mosquitto and a live agent: the operator (the test cloud, holding the key the
locker trusts and sealing codes to it) sets the scene; the attacker (a client with no key)
tries. None of it may open a door, learn a code or change what the locker keeps on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.contract.sealing import seal
from locker_agent.ctl.client import ConnectionOptions, FleetClient, Received
from locker_agent.domain.model import AssignmentStatus
from locker_agent.runtime.daemon import Agent
from tests.cloud.harness import AgentThread, Cloud
from tests.conftest import BIN, ConfigWriter
from tests.support.mosquitto import MosquittoBroker, mosquitto  # noqa: F401 - fixture
from tests.support.operator import as_operator_document, locker_key

LOCKER = "test-locker"
VICTIM_CODE = "48291377"
COURIER_CODE = "CoUr1Er5Vy"
ATTACKER_CODE = "AtTaCk3r99"


class World:
    """A live locker on the broker, its operator, an attacker, and a spy on ``#``."""

    def __init__(self, thread: AgentThread, operator: Cloud, attacker: FleetClient,
                 seen: list[Received]) -> None:
        self.thread = thread
        self.operator = operator
        self.attacker = attacker
        self.seen = seen

    @property
    def agent(self) -> Agent:
        assert self.thread.agent is not None
        return self.thread.agent

    def attack(self, name: str, args: dict[str, Any] | None = None, **extra: Any
               ) -> dict[str, Any]:
        """A command as the attacker can send it: well formed, but signed by no key it has."""
        document = {"id": str(uuid.uuid4()),
                    "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                    "args": args or {}, **extra}
        return self.attacker.send(LOCKER, name, document, timeout=10)

    def deposit(self, assignment_id: str, code: str, **extra: Any) -> str:
        """The operator announces a parcel; a courier puts it in. Returns its compartment."""
        reply = self.operator.command("assign", {"assignment_id": assignment_id,
                                                 "pickup_code": code, "size": "S", **extra})
        assert reply["ok"], reply
        service = self.agent.service
        self.thread.call(lambda: service.apply(lambda: service.locker.begin_deposit(
            assignment_id, actor="courier:test", now=service.now())))
        until(lambda: self.status(assignment_id) is AssignmentStatus.DEPOSITED)
        compartment: str = reply["result"]["compartment_id"]
        return compartment

    def status(self, assignment_id: str) -> AssignmentStatus | None:
        def read() -> AssignmentStatus | None:
            live = self.agent.service.locker.assignments.get(assignment_id)
            return live.status if live else self.agent.store.archived_status(assignment_id)
        return self.thread.call(read)

    def pulses(self) -> list[tuple[str, float]]:
        simulator = self.agent.simulator
        assert simulator is not None
        return self.thread.call(lambda: list(simulator.pulses))

    def kept(self) -> dict[str, Any]:
        """What the locker keeps on disk that a command could change (not the clock)."""
        store = self.agent.store

        def read() -> dict[str, Any]:
            return {table: store.execute_sql(f"SELECT * FROM {table} ORDER BY 1") for table in (
                "assignment", "credential", "credential_assignment", "compartment", "inbox",
                "unlock_intent", "code_lockout", "used_token", "courier_revocation")} | {
                "locker": store.execute_sql(
                    "SELECT out_of_service_reason, remote_open_lockout, policy_overrides "
                    "FROM locker"),
                "events": store.execute_sql("SELECT id, type FROM audit ORDER BY id"),
            }
        return self.thread.call(read)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.operator.unique_events() if e["type"] == kind]


def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def world(
    write_config: ConfigWriter, mosquitto: MosquittoBroker,  # noqa: F811
) -> Iterator[World]:
    config = write_config(
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.2,
              "reconnect_max_s": 1.0},
        auto_close=0.2,
        policies={"remote_open_limit": 3, "remote_open_window_s": 600},
    )
    seen: list[Received] = []
    options = ConnectionOptions(host=mosquitto.host, port=mosquitto.port)
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as operator, \
            FleetClient(options) as attacker, FleetClient(options) as spy, \
            AgentThread(config) as thread:
        spy.subscribe("#", seen.append)
        operator.wait_for(lambda: bool(operator.on("status")), what="birth message")
        yield World(thread, operator, attacker, seen)


def test_unsigned_commands_are_refused_and_leave_nothing_on_disk(world: World) -> None:
    compartment = world.deposit("victim-1", VICTIM_CODE)
    before = world.kept()
    for name, args in [
        ("grant_courier", {"courier_id": "evil", "code": ATTACKER_CODE}),
        ("cancel", {"assignment_id": "victim-1", "reason": "x"}),
        ("set_service", {"in_service": False, "reason": "Closed: call 555-EVIL"}),
        ("set_config", {"remote_open_limit": 100, "remote_open_window_s": 0.001}),
        ("open", {"compartment_id": compartment, "reason": "x", "operator": "evil"}),
        ("revoke_code", {"assignment_id": "victim-1"}),
        ("sync", {}),
        ("unlock_everything", {}),
    ]:
        reply = world.attack(name, args)
        assert reply["ok"] is False, (name, reply)
        assert reply["error"]["code"] == "bad_signature", (name, reply)
        forged = world.attack(name, args, signature="AAAA" * 22)
        assert forged["error"]["code"] == "bad_signature", (name, forged)
    assert world.kept() == before
    # the courier the attacker tried to create cannot sign in at the kiosk
    desk = world.agent.courier_desk
    assert desk is not None
    outcome = world.thread.run(desk.sign_in(CodeEntry("kiosk", ATTACKER_CODE)))
    assert not outcome.ok
    assert world.status("victim-1") is AssignmentStatus.DEPOSITED
    assert world.pulses() == [(compartment, 0.05)]  # the courier's deposit, nothing since


def test_a_parcel_named_after_the_victims_shares_nothing(world: World) -> None:
    compartment = world.deposit("victim-1", VICTIM_CODE)
    # even the operator (signed) cannot slip a parcel into the victim's compartment by naming
    # the victim's published assignment id as its customer: that id is no customer_ref
    reply = world.operator.command("assign", {
        "assignment_id": "evil-1", "pickup_code": ATTACKER_CODE, "size": "S",
        "customer_ref": "victim-1", "compartment_id": compartment})
    assert not reply["ok"] and reply["error"]["code"] == "compartment_unavailable", reply
    # and the attacker cannot send the assign at all
    reply = world.attack("assign", {"assignment_id": "evil-2", "pickup_code": ATTACKER_CODE,
                                    "size": "S", "customer_ref": "victim-1"})
    assert reply["error"]["code"] == "bad_signature"


def test_a_live_code_cannot_be_found_by_assigning_it(world: World) -> None:
    world.deposit("victim-1", VICTIM_CODE)
    # without the key there is no answer at all about codes
    reply = world.attack("assign", {"assignment_id": "probe", "pickup_code": VICTIM_CODE,
                                    "size": "S", "hold_compartment": False})
    assert reply["error"]["code"] == "bad_signature"
    # with a key (stolen, or a buggy cloud) the answer to a live code is the answer to any
    fresh = world.operator.command("assign", {"assignment_id": "probe-1", "pickup_code":
                                              "11223344", "size": "S", "hold_compartment": False})
    live = world.operator.command("assign", {"assignment_id": "probe-2", "pickup_code":
                                             VICTIM_CODE, "size": "S", "hold_compartment": False})
    assert fresh["ok"] and live["ok"]
    assert set(fresh["result"]) == set(live["result"])
    assert fresh["result"]["compartment_id"] is None and live["result"]["compartment_id"] is None
    time.sleep(0.3)  # let the events of both reach the spy
    assert not [m for m in world.seen if b"collision" in m.payload]
    # the matched code is withdrawn: neither holder of it opens the victim's door
    outcome = world.thread.run(world.agent.service.submit_code(CodeEntry("keypad", VICTIM_CODE)))
    assert not outcome.ok
    # repeated collisions raise an alarm that says how many, never which
    for n in range(2):
        for parcel in (f"own-{n}", f"dup-{n}"):  # the second reuses the first's live code
            assert world.operator.command("assign", {
                "assignment_id": parcel, "pickup_code": f"9988776{n}", "size": "S",
                "hold_compartment": False})["ok"]
    world.operator.wait_for(lambda: bool(world.events("code_collision_alarm")),
                            what="code_collision_alarm")
    alarm = world.events("code_collision_alarm")[0]
    assert alarm["data"]["collisions"] >= 3 and alarm["assignment_id"] is None


def test_remote_open_policing_cannot_be_loosened_from_the_broker(world: World) -> None:
    before = world.kept()
    reply = world.attack("set_config", {"remote_open_limit": 100, "remote_open_window_s": 1})
    assert reply["error"]["code"] == "bad_signature"
    assert world.kept() == before
    # even signed, set_config only tightens what the config file allows
    reply = world.operator.command("set_config", {"remote_open_limit": 100})
    assert reply["error"]["code"] == "loosening_refused", reply
    assert reply["error"]["field"] == "args.remote_open_limit"
    reply = world.operator.command("set_config", {"remote_open_window_s": 1})
    assert reply["error"]["code"] == "loosening_refused", reply
    assert world.operator.command("set_config", {"remote_open_limit": 2})["ok"]
    opened = [world.operator.command("open", {"compartment_id": c, "reason": "audit",
                                              "operator": "op-1"})
              for c in ("A01", "A02", "A03")]
    assert [r["ok"] for r in opened] == [True, True, False]
    assert opened[2]["error"]["code"] == "remote_open_refused"
    world.operator.wait_for(lambda: bool(world.events("remote_open_alarm")),
                            what="remote_open_alarm")


def test_cancelling_many_parcels_inside_is_held_back_with_an_alarm(world: World) -> None:
    for n in range(4):
        world.deposit(f"p-{n}", f"5566778{n}")
    replies = [world.operator.command("cancel", {"assignment_id": f"p-{n}", "reason": "x"})
               for n in range(4)]
    assert [r["ok"] for r in replies] == [True, True, True, False]
    assert replies[3]["error"]["code"] == "held_back"
    assert world.status("p-3") is AssignmentStatus.DEPOSITED
    world.operator.wait_for(lambda: bool(world.events("release_held_back")),
                            what="release_held_back")


def _paho(broker_port: int, received: list[mqtt.MQTTMessage]) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"evil-{uuid.uuid4().hex[:8]}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = lambda _c, _u, message: received.append(message)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    client.subscribe("#", qos=1)
    assert subscribed.wait(5)
    return client


def test_replies_never_land_on_another_lockers_or_a_command_topic(
    world: World, mosquitto: MosquittoBroker,  # noqa: F811
) -> None:
    received: list[mqtt.MQTTMessage] = []
    client = _paho(mosquitto.port, received)
    try:
        targets = ["lockers/other-locker/status", f"lockers/{LOCKER}/cmd/open",
                   f"lockers/{LOCKER}/status", "lockers/_ctl/a/b/replies"]
        for target in targets:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = target
            document = {"id": str(uuid.uuid4()), "reply_to": target,
                        "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}
            client.publish(f"lockers/{LOCKER}/cmd/ping", json.dumps(document), qos=1,
                           properties=properties).wait_for_publish(5)
        until(lambda: len([m for m in received if m.topic == f"lockers/{LOCKER}/replies"
                           and b'"pong"' in m.payload]) >= len(targets), what="four replies")
        for target in targets:
            assert not [m for m in received if m.topic == target and b"pong" in m.payload]
        assert not [m for m in received if m.topic == f"lockers/{LOCKER}/cmd/open"
                    and b'"ok"' in m.payload]
    finally:
        client.loop_stop()
        client.disconnect()


def test_codes_travel_sealed_to_this_locker_only(world: World) -> None:
    # signed, but with the code in clear: refused, naming the field
    document = {"id": str(uuid.uuid4()),
                "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                "args": {"assignment_id": "p-1", "pickup_code": "Zq84Hn27", "size": "S"}}
    clear = as_operator_document(LOCKER, "assign", document, seal=False)
    reply = world.operator.client.send(LOCKER, "assign", clear)
    assert (reply["error"]["code"], reply["error"]["field"]) == (
        "code_not_sealed", "args.pickup_code")
    # sealed for another locker, or for another field: refused too
    key = locker_key(LOCKER)
    assert key is not None
    for locker_id, field in (("other-locker", "pickup_code"), (LOCKER, "code")):
        document = {"id": str(uuid.uuid4()),
                    "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                    "args": {"assignment_id": "p-1", "size": "S", "pickup_code": seal(
                        "Zq84Hn27", key, locker_id=locker_id, field=field)}}
        reply = world.operator.client.send(
            LOCKER, "assign", as_operator_document(LOCKER, "assign", document))
        assert (reply["error"]["code"], reply["error"]["field"]) == (
            "invalid", "args.pickup_code"), reply
    assert "p-1" not in world.thread.call(lambda: set(world.agent.service.locker.assignments))


def test_a_locker_without_an_operator_key_will_not_start(
    write_config: ConfigWriter, tmp_path: Path, mosquitto: MosquittoBroker,  # noqa: F811
) -> None:
    agent = [str(BIN / "locker-agent")] if (BIN / "locker-agent").exists() else [
        sys.executable, "-m", "locker_agent.cli"]
    config = write_config(mqtt={"host": mosquitto.host, "port": mosquitto.port},
                          security={"operator_public_keys": []})
    result = subprocess.run([*agent, "run", "--config", str(config), "--no-console"],
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr
    assert "security.operator_public_keys" in result.stderr
    assert "Traceback" not in result.stderr
