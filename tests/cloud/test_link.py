"""The cloud link against a real Mosquitto that the test starts on a free port."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from locker_agent.domain.model import DoorState
from tests.cloud.harness import AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import MosquittoBroker, mosquitto  # noqa: F401 - fixture

LOCKER = "test-locker"


@pytest.fixture
def link_config(write_config: ConfigWriter, mosquitto: MosquittoBroker) -> Path:  # noqa: F811
    return write_config(
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.2,
              "reconnect_max_s": 1.0},
        auto_close=0.2,
    )


@pytest.fixture
def cloud(mosquitto: MosquittoBroker) -> Iterator[Cloud]:  # noqa: F811
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as client:
        yield client


@pytest.fixture
def agent(link_config: Path, cloud: Cloud) -> Iterator[AgentThread]:
    with AgentThread(link_config) as running:
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth message")
        yield running


def assign(
    cloud: Cloud, assignment_id: str, code: str = "48291300", **extra: Any
) -> dict[str, Any]:
    return cloud.command(
        "assign", {"assignment_id": assignment_id, "pickup_code": code, "size": "S", **extra}
    )


def test_birth_status_and_retained_compartments_on_connect(
    agent: AgentThread, cloud: Cloud
) -> None:
    status = cloud.on("status")[-1].json()
    assert status["online"] is True
    assert status["locker_id"] == LOCKER
    assert status["free_by_size"] == {"S": 3, "M": 1, "L": 1, "XL": 1}
    assert status["boot_id"]
    cloud.wait_for(lambda: len({m.topic for m in cloud.messages if "/compartments/" in m.topic})
                   == 6, what="six compartment messages")
    a01 = [m for m in cloud.messages if m.topic.endswith("/compartments/A01")][-1].json()
    assert (a01["state"], a01["door"], a01["size"]) == ("free", "closed", "S")


def test_assign_replies_and_the_event_follows_in_order(agent: AgentThread, cloud: Cloud) -> None:
    reply = assign(cloud, "p-1")
    assert reply["ok"], reply
    assert reply["result"]["compartment_id"] == "A01"
    cloud.wait_for(lambda: any(e["type"] == "reserved" for e in cloud.events()),
                   what="reserved event")
    event = next(e for e in cloud.events() if e["type"] == "reserved")
    assert event["assignment_id"] == "p-1"
    assert event["locker_id"] == LOCKER
    assert event["seq"] >= 1 and uuid.UUID(event["id"])
    # the compartment's retained state follows
    cloud.wait_for(lambda: any(
        m.json()["state"] == "reserved" for m in cloud.on("compartments/A01")
    ), what="A01 reserved")
    # and the outbox is drained once acknowledged
    cloud.wait_for(lambda: agent.call(lambda: agent.agent.store.outbox_depth()) == 0,  # type: ignore[union-attr]
                   what="outbox drained")


def test_a_redelivered_command_is_applied_once_and_answered_the_same(
    agent: AgentThread, cloud: Cloud
) -> None:
    envelope = cloud.client.envelope(
        LOCKER, "assign", {"assignment_id": "p-1", "pickup_code": "48291300", "size": "S"}
    )
    first = cloud.client.send(LOCKER, "assign", envelope)
    second = cloud.client.send(LOCKER, "assign", envelope)
    assert first == second and first["ok"]
    cloud.wait_for(lambda: agent.call(lambda: agent.agent.store.outbox_depth()) == 0,  # type: ignore[union-attr]
                   what="outbox drained")
    reserved = [e for e in cloud.unique_events() if e["type"] == "reserved"]
    assert len(reserved) == 1


def test_expired_retained_unknown_and_malformed_commands_get_clear_errors(
    agent: AgentThread, cloud: Cloud
) -> None:
    expired = cloud.client.envelope(LOCKER, "ping", expires_in=timedelta(seconds=-1))
    reply = cloud.client.send(LOCKER, "ping", expired)
    assert reply["error"]["code"] == "expired" and reply["error"]["field"] == "expires_at"

    retained = cloud.client.envelope(LOCKER, "ping")
    reply = cloud.client.send(LOCKER, "ping", retained, retain=True)
    assert reply["error"]["code"] == "retained"
    # clear the retained message so it does not linger on the broker
    cloud.client._client.publish(f"lockers/{LOCKER}/cmd/ping", b"", retain=True, qos=1)

    reply = cloud.command("unlock_everything")
    assert reply["error"]["code"] == "unknown_command"

    reply = cloud.command("assign", {"assignment_id": "p-1", "pickup_code": "12"})
    assert reply["error"]["code"] == "invalid"
    assert reply["error"]["field"] == "args.pickup_code"

    reply = cloud.command("assign", {"assignment_id": "p-1", "size": "S"})
    assert reply["error"]["field"] == "args.pickup_code"
    assert "missing" in reply["error"]["message"]

    reply = cloud.client.send(LOCKER, "ping", b"{not json")
    assert reply["error"]["code"] == "invalid_json"

    reply = cloud.client.send(LOCKER, "ping", b"x" * (64 * 1024 + 1))
    assert reply["error"]["code"] == "payload_too_large"

    reply = cloud.command("assign", {"assignment_id": "p-1", "pickup_code": "48291300",
                                     "size": "S", "colour": "red"})
    assert reply["error"]["field"] == "args.colour"

    assert cloud.command("ping")["ok"]
    assert agent.agent is not None and agent.agent.simulator is not None
    assert agent.agent.simulator.pulses == []


def test_a_full_locker_answers_locker_full_naming_the_size(
    agent: AgentThread, cloud: Cloud
) -> None:
    assert assign(cloud, "p-1", "11111100", size="XL")["ok"]
    reply = assign(cloud, "p-2", "22222200", size="XL")
    assert reply["error"]["code"] == "locker_full"
    assert reply["error"]["field"] == "args.size"
    assert "XL" in reply["error"]["message"]


def test_remote_pickup_opens_that_parcel_only_and_is_recorded(
    agent: AgentThread, cloud: Cloud
) -> None:
    assert agent.agent is not None and agent.agent.simulator is not None
    service = agent.agent.service
    assert assign(cloud, "p-1")["ok"]
    assert assign(cloud, "p-2", "99911100")["ok"]
    agent.call(lambda: service.apply(
        lambda: service.locker.begin_deposit("p-1", actor="c", now=service.now())))
    cloud.wait_for(lambda: any(e["type"] == "deposited" for e in cloud.events()),
                   what="deposited")
    reply = cloud.command("remote_pickup", {"assignment_id": "p-1"})
    assert reply["ok"], reply
    assert reply["result"]["compartment_id"] == "A01"
    cloud.wait_for(lambda: any(e["type"] == "picked_up" for e in cloud.events()),
                   what="picked up")
    opened = [e for e in cloud.events() if e["type"] == "unlock_requested"]
    assert [e["compartment_id"] for e in opened] == ["A01", "A01"]
    assert opened[-1]["data"]["actor"] == "customer_app"
    # the other parcel, not deposited, cannot be opened remotely
    reply = cloud.command("remote_pickup", {"assignment_id": "p-2"})
    assert reply["error"]["code"] == "invalid_state"


def test_a_burst_of_remote_openings_trips_the_alarm_until_cleared(
    write_config: ConfigWriter, mosquitto: MosquittoBroker, cloud: Cloud  # noqa: F811
) -> None:
    config = write_config(
        mqtt={"host": mosquitto.host, "port": mosquitto.port},
        policies={"remote_open_limit": 3, "remote_open_window_s": 600},
        auto_close=0.05,
    )
    with AgentThread(config) as agent:
        cloud.wait_for(lambda: bool(cloud.on("status")))
        opens = []
        for n in range(3):
            compartment = f"A0{n + 1}"
            opens.append(cloud.command("open", {"compartment_id": compartment,
                                                "reason": "audit", "operator": "op-1"}))
        assert all(r["ok"] for r in opens), opens
        refused = cloud.command("open", {"compartment_id": "A04", "reason": "audit",
                                         "operator": "op-1"})
        assert refused["error"]["code"] == "remote_open_refused"
        cloud.wait_for(lambda: any(e["type"] == "remote_open_alarm" for e in cloud.events()),
                       what="alarm event")
        again = cloud.command("open", {"compartment_id": "A05", "reason": "audit",
                                       "operator": "op-1"})
        assert again["error"]["code"] == "remote_open_refused"
        assert agent.agent is not None and agent.agent.simulator is not None
        cloud.wait_for(lambda: len(agent.agent.simulator.pulses) == 3,  # type: ignore[union-attr]
                       what="three pulses")
        cleared = cloud.command("clear_alarm", {"operator": "op-1", "reason": "checked"})
        assert cleared["ok"], cleared
        assert cloud.command("open", {"compartment_id": "A05", "reason": "audit",
                                      "operator": "op-1"})["ok"]
        assert sorted(p[0] for p in agent.agent.simulator.pulses[:3]) == ["A01", "A02", "A03"]


def test_sync_returns_the_whole_state(agent: AgentThread, cloud: Cloud) -> None:
    assert assign(cloud, "p-1")["ok"]
    reply = cloud.command("sync")
    result = reply["result"]
    assert len(result["compartments"]) == 6
    assert result["compartments"][0]["state"] == "reserved"
    assert [a["id"] for a in result["assignments"]] == ["p-1"]
    assert result["free_by_size"]["S"] == 2
    assert result["last_seq"] >= 1


def test_set_config_changes_runtime_policies_and_survives_a_restart(
    link_config: Path, cloud: Cloud
) -> None:
    with AgentThread(link_config):
        cloud.wait_for(lambda: bool(cloud.on("status")))
        reply = cloud.command("set_config", {"hold_period_h": 48, "remote_open_limit": 2})
        assert reply["ok"] and reply["result"]["policies"]["hold_period_h"] == 48
    with AgentThread(link_config):
        cloud.wait_for(lambda: len(cloud.on("status")) >= 3)
        policies = cloud.command("sync")["result"]["policies"]
        assert (policies["hold_period_h"], policies["remote_open_limit"]) == (48, 2)


def test_the_last_will_marks_the_locker_offline_and_a_clean_stop_says_so_too(
    link_config: Path, cloud: Cloud
) -> None:
    with AgentThread(link_config):
        cloud.wait_for(lambda: bool(cloud.on("status")))
    cloud.wait_for(lambda: cloud.on("status")[-1].json()["online"] is False,
                   what="offline status")


def test_offline_the_locker_keeps_working_and_events_drain_in_order_later(
    link_config: Path, mosquitto: MosquittoBroker, cloud: Cloud  # noqa: F811
) -> None:
    with AgentThread(link_config) as agent:
        cloud.wait_for(lambda: bool(cloud.on("status")))
        assert assign(cloud, "p-1", "48291300")["ok"]
        mosquitto.stop()
        assert agent.agent is not None
        running = agent.agent
        service, simulator = running.service, running.simulator
        assert simulator is not None
        # a courier loads the parcel and the customer collects it, with no broker
        agent.call(lambda: service.apply(
            lambda: service.locker.begin_deposit("p-1", actor="c", now=service.now())))
        cloud.wait_for(lambda: agent.call(
            lambda: "p-1" in service.locker.assignments
            and service.locker.assignments["p-1"].status.value == "deposited"), what="deposit")
        from locker_agent.app.ports.hardware import CodeEntry
        outcome = agent.run(service.submit_code(CodeEntry("keypad", "48291300")))
        assert outcome.ok
        cloud.wait_for(lambda: agent.call(lambda: "p-1" not in service.locker.assignments),
                       what="picked up offline")
        assert agent.call(lambda: running.store.outbox_depth()) > 5
        mosquitto.start()  # the cloud's own client reconnects to its persistent session
        cloud.wait_for(lambda: agent.call(lambda: running.store.outbox_depth()) == 0,
                       timeout=20, what="outbox drained after reconnect")
        cloud.wait_for(lambda: any(e["type"] == "picked_up" for e in cloud.events()),
                       what="picked_up delivered")
        assert simulator.read()["A01"] is DoorState.CLOSED
    seqs = [e["seq"] for e in cloud.unique_events()]
    assert seqs == sorted(seqs)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_mqtt_311_replies_on_the_envelope_reply_topic(
    write_config: ConfigWriter, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    config = write_config(mqtt={"host": mosquitto.host, "port": mosquitto.port,
                                "protocol": "3.1.1"})
    with Cloud(mosquitto.host, mosquitto.port, LOCKER, protocol="3.1.1") as cloud, \
            AgentThread(config):
        cloud.wait_for(lambda: bool(cloud.on("status")))
        reply = assign(cloud, "p-1")
        assert reply["ok"], reply
        cloud.wait_for(lambda: any(e["type"] == "reserved" for e in cloud.events()))


def test_commands_are_never_applied_from_another_lockers_topic(
    agent: AgentThread, cloud: Cloud, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    other = Cloud(mosquitto.host, mosquitto.port, "other-locker")
    with other:
        envelope = other.client.envelope("other-locker", "open", {
            "compartment_id": "A01", "reason": "x", "operator": "op"})
        other.client._client.publish(
            "lockers/other-locker/cmd/open", json.dumps(envelope), qos=1)
    assert cloud.command("ping")["ok"]
    assert agent.agent is not None and agent.agent.simulator is not None
    assert agent.agent.simulator.pulses == []
    assert datetime.now(UTC)


def test_the_status_since_is_the_connect_time_and_every_timestamp_ends_in_z(
    agent: AgentThread, cloud: Cloud
) -> None:
    # issue 17: `since` moved with every change of the free count, so "online · just now"
    birth = cloud.on("status")[-1].json()
    assert assign(cloud, "p-1")["ok"]
    cloud.wait_for(lambda: cloud.on("status")[-1].json()["free_by_size"]["S"] == 2,
                   what="a status with the new free count")
    assert cloud.on("status")[-1].json()["since"] == birth["since"]
    ping = cloud.command("ping")["result"]["time"]
    sync = cloud.command("sync")["result"]["at"]
    event_at = next(e for e in cloud.events() if e["type"] == "reserved")["at"]
    for stamp in (birth["since"], ping, sync, event_at):
        assert stamp.endswith("Z") and "+00:00" not in stamp, stamp
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)


def test_an_openings_events_come_pulse_first_in_seq_order(
    agent: AgentThread, cloud: Cloud
) -> None:
    # issue 17: door_opened was committed before unlock_pulsed
    assert agent.agent is not None
    service = agent.agent.service
    assert assign(cloud, "p-1")["ok"]
    agent.call(lambda: service.apply(
        lambda: service.locker.begin_deposit("p-1", actor="c", now=service.now())))
    cloud.wait_for(lambda: any(e["type"] == "deposited" for e in cloud.events()),
                   what="deposited")
    kinds = [e["type"] for e in sorted(cloud.unique_events(), key=lambda e: e["seq"])
             if e["compartment_id"] == "A01" and e["type"] != "reserved"]
    assert kinds[:4] == ["unlock_requested", "unlock_pulsed", "door_opened", "door_closed"]
