"""The command processor in-process: every command, every refusal, at-most-once and secrecy.

A real agent is built by the composition root (``build_agent``) with an MQTT host set, so no
local broker is started and nothing connects until ``agent.start()``; the tests call
``agent.processor.handle(name, payload)`` directly, as the link does for a message on
``cmd/{name}``. Tests that need doors to move run the agent on an event loop
(``agent.start()``): the link then tries port 1 and backs off quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from locker_agent.cloud.commands import Answer
from locker_agent.config import load_config
from locker_agent.contract import messages as c
from locker_agent.contract.signing import canonical_command, public_key_base64, sign
from locker_agent.contract.topics import Topics
from locker_agent.domain.model import AssignmentStatus
from locker_agent.runtime.daemon import Agent, build_agent
from locker_agent.runtime.log import JsonFormatter, KeyValueFormatter
from locker_agent.store import Store
from tests.conftest import ConfigWriter
from tests.support.operator import as_operator_document

pytestmark = pytest.mark.usefixtures("clean_env")

T = TypeVar("T")
LOCKER = "test-locker"

# Codes distinctive enough that finding one in a file or a log cannot be a coincidence.
PICKUP = "PiCk7Up9Zq"
RETURN = "ReTu4Rn8Xw"
COURIER = "CoUr1Er5Vy"

AgentFactory = Callable[..., Agent]
OPEN_ARGS = {"compartment_id": "A01", "reason": "audit", "operator": "op-1"}


@pytest.fixture
def make_agent(write_config: ConfigWriter) -> Iterator[AgentFactory]:
    """Build a real agent (not started) whose MQTT link would go to 127.0.0.1:1."""
    built: list[Agent] = []

    def make(*, mqtt: dict[str, object] | None = None, **options: Any) -> Agent:
        agent = build_agent(load_config(write_config(
            mqtt={"host": "127.0.0.1", "port": 1, "reconnect_min_s": 5.0, **(mqtt or {})},
            **options,
        )))
        assert agent.processor is not None
        built.append(agent)
        return agent

    yield make
    for agent in built:
        agent.store.close()


@pytest.fixture
def agent(make_agent: AgentFactory) -> Agent:
    return make_agent()


@pytest.fixture
def operator_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signed_agent(make_agent: AgentFactory, operator_key: Ed25519PrivateKey) -> Agent:
    return make_agent(mqtt={"operator_public_key": public_key_base64(operator_key)})


# ------------------------------------------------------------------------------ helpers


def envelope(
    args: dict[str, Any] | None = None,
    *,
    command_id: str | None = None,
    expires_in: timedelta = timedelta(minutes=5),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": command_id or str(uuid.uuid4()),
        "expires_at": (datetime.now(UTC) + expires_in).isoformat(),
        "args": dict(args or {}),
        **extra,
    }


def signed(
    key: Ed25519PrivateKey, name: str, args: dict[str, Any], *, locker_id: str = LOCKER,
    **options: Any,
) -> dict[str, Any]:
    document = envelope(args, **options)
    message = canonical_command(
        locker_id, name, document["id"], document["expires_at"], document["args"]
    )
    document["signature"] = sign(key, message)
    return document


def handle(agent: Agent, name: str, payload: bytes, *, retained: bool = False) -> Answer:
    assert agent.processor is not None
    answer = agent.processor.handle(name, payload, retained=retained)
    # whatever it says, it is a contract reply the link can publish
    c.Reply.model_validate_json(answer.reply.model_dump_json())
    return answer


def send(
    agent: Agent, name: str, document: dict[str, Any] | None = None, *, retained: bool = False,
    as_operator: bool = True,
) -> c.Reply:
    """Send ``document`` as the test operator would (codes sealed, signed) unless it carries
    a signature of its own or ``as_operator`` is off."""
    document = envelope() if document is None else document
    if as_operator and "signature" not in document and isinstance(document.get("args", {}), dict):
        document = as_operator_document(agent.config.locker_id, name, document)
    payload = json.dumps(document).encode()
    return handle(agent, name, payload, retained=retained).reply


def command(agent: Agent, name: str, args: dict[str, Any] | None = None, **options: Any
            ) -> c.Reply:
    return send(agent, name, envelope(args, **options))


def ok(reply: c.Reply) -> dict[str, Any]:
    assert reply.ok, reply
    assert reply.error is None and reply.result is not None
    return reply.result


def refused(reply: c.Reply, code: str, field: str | None = None) -> c.ErrorBody:
    assert not reply.ok, reply
    assert reply.result is None and reply.error is not None
    assert (reply.error.code, reply.error.field) == (code, field), reply.error
    assert reply.error.message
    return reply.error


def event_types(agent: Agent) -> list[str]:
    return [e.type for e in agent.store.all_events()]


def inbox_rows(agent: Agent) -> int:
    return int(agent.store.execute_sql("SELECT count(*) FROM inbox")[0][0])


def assign(agent: Agent, assignment_id: str = "p-1", code: str = PICKUP, **extra: Any
           ) -> c.Reply:
    return command(agent, "assign", {"assignment_id": assignment_id, "pickup_code": code,
                                     "size": "S", **extra})


def run(agent: Agent, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario`` with the agent started (doors pulse), then stop it cleanly."""

    async def main() -> T:
        await agent.start()
        try:
            return await scenario()
        finally:
            await settle(agent)
            await agent.stop()

    return asyncio.run(main())


async def settle(agent: Agent) -> None:
    """Let every door finish before stopping, so a test sees the whole door cycle."""
    with contextlib.suppress(AssertionError):
        await until(lambda: not agent.service.locker.intents, "doors settled")
    await asyncio.sleep(0.1)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def deposit(agent: Agent, assignment_id: str) -> None:
    """A courier loads the parcel: the door pulses, opens and closes by itself."""
    service = agent.service
    service.apply(lambda: service.locker.begin_deposit(assignment_id, actor="courier-1",
                                                       now=service.now()))
    await until(lambda: assignment_id in service.locker.assignments
                and service.locker.assignments[assignment_id].status
                is AssignmentStatus.DEPOSITED, f"{assignment_id} deposited")


# ---------------------------------------------------------------- happy paths, by command


def test_assign_reserves_the_smallest_fitting_compartment(agent: Agent) -> None:
    result = ok(assign(agent, "p-1"))
    assert result == {"assignment_id": "p-1", "compartment_id": "A01", "label": "A01",
                      "size": "S"}
    assert agent.service.locker.assignments["p-1"].status is AssignmentStatus.RESERVED
    [reserved] = agent.store.all_events()
    assert (reserved.type, reserved.compartment_id, reserved.assignment_id) == (
        "reserved", "A01", "p-1")
    # an explicit compartment, accessible, with a barcode and its own hold period
    result = ok(command(agent, "assign", {
        "assignment_id": "p-2", "pickup_code": "Zz998877", "compartment_id": "A05",
        "accessible": True, "barcode": "JJD0001", "customer_ref": "cust-9",
        "hold_period_h": 12,
    }))
    assert (result["compartment_id"], result["size"]) == ("A05", "L")
    assert agent.service.locker.assignments["p-2"].hold_seconds == 12 * 3600


def test_cancel_releases_the_compartment(agent: Agent) -> None:
    ok(assign(agent))
    result = ok(command(agent, "cancel", {"assignment_id": "p-1", "reason": "order cancelled"}))
    assert result == {"assignment_id": "p-1", "status": "cancelled"}
    assert "p-1" not in agent.service.locker.assignments
    assert agent.service.locker.free_by_size()["S"] == 3
    assert event_types(agent) == ["reserved", "cancelled"]


def test_extend_lengthens_the_hold(agent: Agent) -> None:
    ok(assign(agent))
    result = ok(command(agent, "extend", {"assignment_id": "p-1", "hours": 24}))
    policies_h = agent.processor.policies.hold_period_h  # type: ignore[union-attr]
    assert result == {"assignment_id": "p-1", "hold_remaining_s": round((policies_h + 24) * 3600)}
    assert event_types(agent) == ["reserved", "extended"]


def test_announce_return_expects_the_customer(agent: Agent) -> None:
    result = ok(command(agent, "announce_return", {
        "assignment_id": "r-1", "size": "M", "return_code": RETURN, "customer_ref": "cust-1",
        "valid_h": 48,
    }))
    assert result == {"assignment_id": "r-1"}
    assert agent.service.locker.assignments["r-1"].status is AssignmentStatus.ANNOUNCED
    assert event_types(agent) == ["return_announced"]


def test_grant_and_revoke_a_courier(agent: Agent) -> None:
    later = (datetime.now(UTC) + timedelta(hours=8)).isoformat()
    assert ok(command(agent, "grant_courier", {"courier_id": "c-1", "code": COURIER,
                                               "expires_at": later})) == {"courier_id": "c-1"}
    assert ok(command(agent, "revoke_courier", {"courier_id": "c-1"})) == {"courier_id": "c-1"}
    assert event_types(agent) == ["courier_granted", "courier_revoked"]
    # again, with no code left: still recorded, for the courier's signed tokens
    assert ok(command(agent, "revoke_courier", {"courier_id": "c-1"})) == {"courier_id": "c-1"}


def test_revoke_code_stops_the_pickup_code(agent: Agent) -> None:
    ok(assign(agent))
    assert ok(command(agent, "revoke_code", {"assignment_id": "p-1"})) == {"assignment_id": "p-1"}
    assert event_types(agent) == ["reserved", "code_revoked"]
    assert all(cred.revoked_at is not None for cred in agent.service.locker.credentials.values())


def test_set_service_for_one_compartment_and_for_the_whole_locker(agent: Agent) -> None:
    locker = agent.service.locker
    result = ok(command(agent, "set_service", {"in_service": False, "compartment_id": "A02",
                                               "reason": "broken hinge"}))
    assert result == {"compartment_id": "A02", "in_service": False}
    assert agent.service.locker.compartments["A02"].out_of_service_reason == "broken hinge"
    assert ok(command(agent, "set_service", {"in_service": True, "compartment_id": "A02"})) == {
        "compartment_id": "A02", "in_service": True}
    assert agent.service.locker.compartments["A02"].in_service

    result = ok(command(agent, "set_service", {"in_service": False, "reason": "cleaning"}))
    assert result == {"compartment_id": None, "in_service": False}
    locker = agent.service.locker
    assert (locker.in_service, locker.out_of_service_reason) == (False, "cleaning")
    ok(command(agent, "set_service", {"in_service": True}))
    assert agent.service.locker.in_service
    assert event_types(agent) == ["out_of_service", "back_in_service"] * 2


def test_sync_returns_the_whole_state(agent: Agent) -> None:
    ok(assign(agent))
    result = ok(command(agent, "sync"))
    assert set(result) == {
        "locker_id", "in_service", "out_of_service_reason", "remote_open_lockout",
        "free_by_size", "compartments", "assignments", "policies", "last_seq",
        "outbox_depth", "at",
    }
    assert result["locker_id"] == LOCKER
    assert result["free_by_size"] == {"S": 2, "M": 1, "L": 1, "XL": 1}
    assert [row["id"] for row in result["compartments"]] == [
        "A01", "A02", "A03", "A04", "A05", "A06"]
    for row in result["compartments"]:
        c.CompartmentMessage.model_validate(row)
    assert [a["id"] for a in result["assignments"]] == ["p-1"]
    assert (result["last_seq"], result["outbox_depth"]) == (1, 1)
    assert event_types(agent) == ["reserved"]  # a query changes nothing


def test_ping_answers_with_version_and_uptime(agent: Agent) -> None:
    result = ok(command(agent, "ping"))
    assert set(result) == {"pong", "version", "boot_id", "uptime_s", "time"}
    assert result["pong"] is True and result["boot_id"]
    assert result["uptime_s"] >= 0
    assert datetime.fromisoformat(result["time"]).tzinfo is not None
    assert agent.store.all_events() == []


def test_set_config_changes_policies_durably_and_tells_listeners(agent: Agent) -> None:
    processor = agent.processor
    assert processor is not None
    told: list[Any] = []
    processor.on_policies_changed.append(told.append)
    result = ok(command(agent, "set_config", {"hold_period_h": 48, "remote_open_limit": 2,
                                              "telemetry_interval_s": 60}))
    assert result["policies"] == {
        "hold_period_h": 48, "reservation_ttl_h": 24, "remote_open_limit": 2,
        "remote_open_window_s": 300, "telemetry_interval_s": 60,
        "max_remote_open_limit": 6, "min_remote_open_window_s": 300,
    }
    assert processor.policies.remote_open_limit == 2 and told == [processor.policies]
    assert agent.store.policy_overrides() == {"hold_period_h": 48, "remote_open_limit": 2,
                                              "telemetry_interval_s": 60}
    assert event_types(agent) == ["config_changed"]
    # a new parcel gets the new hold period
    ok(assign(agent))
    assert agent.service.locker.assignments["p-1"].hold_seconds == 48 * 3600


def test_clear_alarm_lifts_the_remote_open_lockout(agent: Agent) -> None:
    refused(command(agent, "clear_alarm", {"operator": "op-1", "reason": "checked"}),
            "invalid_state")
    service = agent.service
    service.apply(lambda: service.locker.trip_remote_open_alarm(reason="test", now=service.now()))
    assert ok(command(agent, "clear_alarm", {"operator": "op-1", "reason": "checked"})) == {
        "cleared": True}
    assert agent.service.locker.remote_open_lockout is None
    assert event_types(agent) == ["remote_open_alarm", "remote_open_alarm_cleared"]


def test_replay_events_queues_published_events_again(agent: Agent) -> None:
    ok(assign(agent, "p-1"))
    ok(assign(agent, "p-2", "Other12345"))
    agent.store.mark_published([1, 2], datetime.now(UTC))
    assert agent.store.outbox_depth() == 0
    result = ok(command(agent, "replay_events", {"from_seq": 2}))
    assert result == {"from_seq": 2, "to_seq": 2, "count": 1, "oldest_kept_seq": 1}
    assert [e.seq for e in agent.store.pending_events()] == [2]
    assert event_types(agent) == ["reserved", "reserved"]  # sent again, not made anew
    refused(command(agent, "replay_events", {"from_seq": 3}), "invalid", "args.from_seq")


def test_a_refused_replay_is_remembered_like_every_other_refusal(agent: Agent) -> None:
    document = envelope({"from_seq": 2})
    first = send(agent, "replay_events", document)
    refused(first, "invalid", "args.from_seq")
    assert agent.store.inbox_reply(document["id"]) is not None
    ok(assign(agent, "p-1"))
    ok(assign(agent, "p-2", "Other12345"))
    assert send(agent, "replay_events", document) == first


def test_stopping_right_after_a_remote_opening_pulsed_does_not_hang(
    make_agent: AgentFactory,
) -> None:
    """Stop lets the pulse finish; its commit wakes the outbox task just as it is cancelled.

    With asyncio.wait_for on Python 3.11 that cancellation was swallowed (CPython gh-86296)
    and stop() never returned; the link now waits with asyncio.timeout.
    """
    agent = make_agent(auto_close=0.05)
    assert agent.simulator is not None

    async def main() -> None:
        await agent.start()
        ok(command(agent, "open", OPEN_ARGS))
        await until(lambda: bool(agent.simulator.pulses), "a pulse")  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        started = loop.time()
        # (MqttLink.stop suppresses CancelledError while awaiting its tasks, so even
        # wait_for's cancellation is swallowed: measure instead of trusting the timeout)
        await asyncio.wait_for(agent.stop(), 5)
        assert loop.time() - started < 2, "Agent.stop() hung until cancelled from outside"

    asyncio.run(main())


def test_open_pulses_exactly_that_compartment(make_agent: AgentFactory) -> None:
    agent = make_agent(auto_close=0.05)
    assert agent.simulator is not None

    async def scenario() -> c.Reply:
        reply = command(agent, "open", {"compartment_id": "A03", "reason": "audit",
                                        "operator": "op-1"})
        await until(lambda: "door_closed" in event_types(agent), "door closed")
        return reply

    reply = run(agent, scenario)
    assert ok(reply) == {"compartment_id": "A03", "label": "A03"}
    assert [p[0] for p in agent.simulator.pulses] == ["A03"]
    events = agent.store.all_events()
    requested = next(e for e in events if e.type == "unlock_requested")
    assert requested.data["actor"] == "operator:op-1"
    assert requested.data["reason"] == "audit"
    # unlock_pulsed is committed as the pulse starts, so before the door it opens
    assert [e.type for e in events] == [
        "unlock_requested", "unlock_pulsed", "door_opened", "door_closed"]


def test_remote_pickup_opens_that_parcel_and_completes_it(make_agent: AgentFactory) -> None:
    agent = make_agent(auto_close=0.05)
    assert agent.simulator is not None

    async def scenario() -> tuple[c.Reply, c.Reply]:
        ok(assign(agent, "p-1"))
        ok(assign(agent, "p-2", "Other12345"))
        await deposit(agent, "p-1")
        reply = command(agent, "remote_pickup", {"assignment_id": "p-1"})
        await until(lambda: "picked_up" in event_types(agent), "picked up")
        # the other parcel, reserved only, cannot be opened remotely
        other = command(agent, "remote_pickup", {"assignment_id": "p-2"})
        return reply, other

    reply, other = run(agent, scenario)
    assert ok(reply) == {"compartment_id": "A01", "label": "A01"}
    refused(other, "invalid_state", "args.assignment_id")
    assert [p[0] for p in agent.simulator.pulses] == ["A01", "A01"]
    assert "p-1" not in agent.service.locker.assignments
    requested = [e for e in agent.store.all_events() if e.type == "unlock_requested"]
    assert requested[-1].data["actor"] == "customer_app"


# --------------------------------------------------------------- the remote-open police


def test_a_burst_of_remote_openings_trips_the_alarm_once_until_cleared(
    make_agent: AgentFactory,
) -> None:
    agent = make_agent(auto_close=0.05,
                       policies={"remote_open_limit": 2, "remote_open_window_s": 600})
    assert agent.simulator is not None

    def open_(compartment: str) -> c.Reply:
        return command(agent, "open", {"compartment_id": compartment, "reason": "audit",
                                       "operator": "op-1"})

    async def scenario() -> None:
        ok(open_("A01"))
        ok(open_("A02"))
        over = refused(open_("A03"), "remote_open_refused")
        assert "more than 2 remote openings" in over.message
        assert event_types(agent).count("remote_open_alarm") == 1
        assert agent.service.locker.remote_open_lockout is not None
        # from now on every remote opening is refused, an app pickup too, and no second alarm
        refused(open_("A04"), "remote_open_refused")
        refused(command(agent, "remote_pickup", {"assignment_id": "p-x"}),
                "remote_open_refused")
        assert event_types(agent).count("remote_open_alarm") == 1
        await until(lambda: len(agent.simulator.pulses) == 2, "two pulses")  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        assert len(agent.simulator.pulses) == 2  # type: ignore[union-attr]
        # the latch is durable: the alarm is in the database, not only in memory
        assert agent.store.execute_sql("SELECT remote_open_lockout FROM locker")[0][0]
        ok(command(agent, "clear_alarm", {"operator": "op-1", "reason": "checked"}))
        ok(open_("A04"))
        await until(lambda: len(agent.simulator.pulses) == 3, "third pulse")  # type: ignore[union-attr]

    run(agent, scenario)
    assert [p[0] for p in agent.simulator.pulses] == ["A01", "A02", "A04"]
    assert event_types(agent).count("remote_open_alarm") == 1
    assert event_types(agent).count("remote_open_alarm_cleared") == 1


def test_unsigned_openings_cannot_trip_the_alarm_when_signatures_are_required(
    make_agent: AgentFactory, operator_key: Ed25519PrivateKey,
) -> None:
    agent = make_agent(mqtt={"operator_public_key": public_key_base64(operator_key)},
                       policies={"remote_open_limit": 1, "remote_open_window_s": 600})
    for n in range(5):
        document = envelope({"compartment_id": f"A0{n + 1}", "reason": "x", "operator": "op-1"})
        refused(send(agent, "open", document, as_operator=False), "bad_signature", "signature")
    assert agent.service.locker.remote_open_lockout is None
    assert agent.store.all_events() == []


# ------------------------------------------------------------------------- signatures


def test_a_correctly_signed_open_is_applied(
    signed_agent: Agent, operator_key: Ed25519PrivateKey
) -> None:
    assert ok(send(signed_agent, "open", signed(operator_key, "open", OPEN_ARGS)))[
        "compartment_id"] == "A01"
    assert event_types(signed_agent) == ["unlock_requested"]


def _tampered(key: Ed25519PrivateKey, case: str) -> dict[str, Any]:
    if case == "missing":
        return envelope(OPEN_ARGS)
    if case == "empty":
        return envelope(OPEN_ARGS, signature="")
    if case == "not base64":
        return envelope(OPEN_ARGS, signature="!!! not base64 !!!")
    if case == "base64 of garbage":
        return envelope(OPEN_ARGS, signature="AAAA" * 16)
    if case == "for another locker":
        return signed(key, "open", OPEN_ARGS, locker_id="other-locker")
    if case == "with another key":
        return signed(Ed25519PrivateKey.generate(), "open", OPEN_ARGS)
    if case == "for another command":
        return signed(key, "remote_pickup", OPEN_ARGS)
    if case == "args altered after signing":
        document = signed(key, "open", OPEN_ARGS)
        document["args"]["compartment_id"] = "A02"
        return document
    if case == "expires_at altered after signing":
        document = signed(key, "open", OPEN_ARGS)
        document["expires_at"] = (datetime.now(UTC) + timedelta(minutes=9)).isoformat()
        return document
    if case == "id altered after signing":
        document = signed(key, "open", OPEN_ARGS)
        document["id"] = str(uuid.uuid4())
        return document
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "missing", "empty", "not base64", "base64 of garbage", "for another locker",
    "with another key", "for another command", "args altered after signing",
    "expires_at altered after signing", "id altered after signing",
])
def test_an_open_without_a_valid_signature_is_refused(
    signed_agent: Agent, operator_key: Ed25519PrivateKey, case: str
) -> None:
    document = _tampered(operator_key, case)
    refused(send(signed_agent, "open", document, as_operator=False), "bad_signature", "signature")
    assert signed_agent.store.all_events() == []
    assert signed_agent.service.locker.intents == {}
    # not remembered: a forged copy must not block the genuine command with the same id
    assert signed_agent.store.inbox_reply(document["id"]) is None


@pytest.mark.parametrize("name", sorted(c.SIGNED_COMMANDS - {"open"}))
def test_the_other_signed_commands_need_a_signature_too(
    signed_agent: Agent, operator_key: Ed25519PrivateKey, name: str
) -> None:
    args = VALID_ARGS[name]
    refused(send(signed_agent, name, envelope(args), as_operator=False),
            "bad_signature", "signature")
    assert signed_agent.store.all_events() == []
    # signed, they get past the signature check to the locker's own answer
    reply = send(signed_agent, name, signed(operator_key, name, args))
    assert reply.error is None or reply.error.code != "bad_signature"


def test_only_ping_works_unsigned(signed_agent: Agent) -> None:
    ok(send(signed_agent, "ping", envelope(), as_operator=False))
    document = envelope(VALID_ARGS["assign"])
    refused(send(signed_agent, "assign", document, as_operator=False), "bad_signature",
            "signature")
    assert signed_agent.store.inbox_reply(document["id"]) is None  # nothing written


# --------------------------------------------------------------------- envelope refusals


@pytest.mark.parametrize("payload", [
    b"", b"{not json", b"[1, 2, 3]", b'"a string"', b"42", b"null", b'{"id": "\xff\xfe"}',
    b"\xff\xfe\xfd",
], ids=["empty", "broken", "array", "string", "number", "null", "bad utf-8 in a string",
        "bad utf-8"])
def test_what_is_not_a_json_object_is_invalid_json(agent: Agent, payload: bytes) -> None:
    reply = handle(agent, "assign", payload).reply
    refused(reply, "invalid_json")
    assert reply.id is None and reply.command == "assign"
    assert inbox_rows(agent) == 0


def test_a_deeply_nested_object_is_invalid_json_not_a_crash(agent: Agent) -> None:
    payload = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    assert len(payload) <= c.MAX_PAYLOAD_BYTES
    refused(handle(agent, "ping", payload).reply, "invalid_json")


def test_payload_size_limit_is_exact(agent: Agent) -> None:
    document = json.dumps(envelope()).encode()
    at_limit = document + b" " * (c.MAX_PAYLOAD_BYTES - len(document))
    ok(handle(agent, "ping", at_limit).reply)
    over = json.dumps(envelope()).encode() + b" " * c.MAX_PAYLOAD_BYTES
    reply = handle(agent, "ping", over).reply
    error = refused(reply, "payload_too_large")
    assert str(c.MAX_PAYLOAD_BYTES) in error.message
    assert reply.id is None  # refused unread


def test_an_expired_command_is_refused_naming_expires_at(agent: Agent) -> None:
    reply = command(agent, "assign", {"assignment_id": "p-1", "pickup_code": PICKUP,
                                      "size": "S"}, expires_in=timedelta(seconds=-1))
    refused(reply, "expired", "expires_at")
    assert agent.store.all_events() == []


def test_expires_at_beyond_the_command_horizon_is_invalid(make_agent: AgentFactory) -> None:
    agent = make_agent(mqtt={"command_horizon_h": 1})
    refused(command(agent, "ping", expires_in=timedelta(hours=1, minutes=1)), "invalid",
            "expires_at")
    ok(command(agent, "ping", expires_in=timedelta(minutes=59)))


def test_the_default_command_horizon_is_a_week(agent: Agent) -> None:
    refused(command(agent, "ping", expires_in=timedelta(hours=169)), "invalid", "expires_at")
    ok(command(agent, "ping", expires_in=timedelta(hours=167)))


def test_a_retained_command_is_refused_and_not_remembered(agent: Agent) -> None:
    document = envelope({"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})
    reply = send(agent, "assign", document, retained=True)
    refused(reply, "retained", "retain")
    assert reply.id == document["id"]
    assert agent.store.all_events() == [] and inbox_rows(agent) == 0
    # sent properly, the same command is applied
    ok(send(agent, "assign", document))


@pytest.mark.parametrize("topic,kept", [
    (f"lockers/{LOCKER}/replies", True),
    ("lockers/_ctl/ops-console-1/replies", True),
    (f"lockers/{LOCKER}/answers/42", False),
    ("cloud/replies", False),
    ("", False),
    ("a/+/b", False),
    ("a/#", False),
    ("x" * 257, False),
    (f"lockers/{LOCKER}/cmd/open", False),
    (f"lockers/{LOCKER}/status", False),
    ("lockers/other-locker/status", False),
    ("lockers/other-locker/cmd/open", False),
    ("lockers/_ctl/cmd/replies", False),
    ("lockers/_ctl/a/b/replies", False),
    ("cmd/ping", False),
])
def test_replies_go_only_to_the_documented_reply_topics(topic: str, kept: bool) -> None:
    assert Topics("lockers", LOCKER).is_reply_topic(topic) is kept


def test_a_retained_copy_of_an_applied_command_gets_the_original_reply(agent: Agent) -> None:
    document = envelope({"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})
    first = send(agent, "assign", document)
    ok(first)
    assert send(agent, "assign", document, retained=True) == first
    assert event_types(agent) == ["reserved"]


def test_an_unknown_command_is_refused_listing_the_known_ones(agent: Agent) -> None:
    reply = command(agent, "unlock_everything")
    error = refused(reply, "unknown_command", "command")
    assert "open" in error.message and "ping" in error.message
    assert reply.command == "unlock_everything"


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("id"), "id"),
    (lambda d: d.update(id="not-a-uuid"), "id"),
    (lambda d: d.update(id=12345678901234567890123456789012), "id"),
    (lambda d: d.pop("expires_at"), "expires_at"),
    (lambda d: d.update(expires_at="tomorrow"), "expires_at"),
    (lambda d: d.update(expires_at=(datetime.now() + timedelta(minutes=5)).isoformat()),
     "expires_at"),
    (lambda d: d.update(args=[]), "args"),
    (lambda d: d.update(args="x"), "args"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d.update(signature="x" * 201), "signature"),
    (lambda d: d.update(reply_to=""), "reply_to"),
    (lambda d: d.update(reply_to=["a"]), "reply_to"),
], ids=["no id", "id not a uuid", "id a number", "no expires_at", "expires_at not a date",
        "expires_at naive", "args a list", "args a string", "unknown field",
        "signature too long", "reply_to empty", "reply_to a list"])
def test_an_invalid_envelope_names_its_field(
    agent: Agent, mutate: Callable[[dict[str, Any]], object], field: str
) -> None:
    document = envelope()
    mutate(document)
    reply = send(agent, "ping", document)
    refused(reply, "invalid", field)
    assert reply.id == (document.get("id") if isinstance(document.get("id"), str) else None)
    assert inbox_rows(agent) == 0


def test_a_command_refused_for_its_envelope_is_not_remembered(agent: Agent) -> None:
    document = envelope({"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})
    broken = {k: v for k, v in document.items() if k != "expires_at"}
    refused(send(agent, "assign", broken), "invalid", "expires_at")
    ok(send(agent, "assign", document))


# ---------------------------------------------------------------- argument refusals


VALID_ARGS: dict[str, dict[str, Any]] = {
    "assign": {"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"},
    "cancel": {"assignment_id": "p-1", "reason": "customer cancelled"},
    "extend": {"assignment_id": "p-1", "hours": 24},
    "announce_return": {"assignment_id": "r-1", "size": "M", "return_code": RETURN},
    "grant_courier": {"courier_id": "c-1", "code": COURIER},
    "revoke_courier": {"courier_id": "c-1"},
    "revoke_code": {"assignment_id": "p-1"},
    "remote_pickup": {"assignment_id": "p-1"},
    "open": {"compartment_id": "A01", "reason": "audit", "operator": "op-1"},
    "set_service": {"in_service": False, "compartment_id": "A02", "reason": "broken"},
    "sync": {},
    "ping": {},
    "set_config": {"hold_period_h": 48},
    "clear_alarm": {"operator": "op-1", "reason": "checked"},
    "replay_events": {"from_seq": 1},
}


def test_every_command_has_valid_example_args() -> None:
    assert set(VALID_ARGS) == set(c.COMMAND_ARGS)
    for name, args in VALID_ARGS.items():
        c.COMMAND_ARGS[name].model_validate(args)


def _field_cases() -> list[Any]:
    cases = []
    for name, model in c.COMMAND_ARGS.items():
        cases.append(pytest.param(name, "colour", "extra", id=f"{name}-extra"))
        for field, info in model.model_fields.items():
            if info.is_required():
                cases.append(pytest.param(name, field, "missing", id=f"{name}-{field}-missing"))
            cases.append(pytest.param(name, field, "wrong type", id=f"{name}-{field}-type"))
    return cases


@pytest.mark.parametrize("name,field,problem", _field_cases())
def test_invalid_args_name_the_field(agent: Agent, name: str, field: str, problem: str) -> None:
    args = dict(VALID_ARGS[name])
    if problem == "missing":
        args.pop(field)
    elif problem == "extra":
        args[field] = "red"
    else:
        args[field] = [1, 2]  # a list is never a valid value of any argument
    document = envelope(args)
    reply = send(agent, name, document)
    error = refused(reply, "invalid", f"args.{field}")
    expected = {"missing": "required field is missing", "extra": "unknown field"}.get(problem)
    if expected:
        assert expected in error.message
    assert agent.store.all_events() == []
    # a refused command is remembered with its reply; ping, which anyone may send, never is
    remembered = agent.store.inbox_reply(document["id"])
    assert remembered == (None if name == "ping" else reply.model_dump(mode="json"))


@pytest.mark.parametrize("name,args,field", [
    ("assign", {**VALID_ARGS["assign"], "pickup_code": "12"}, "pickup_code"),
    ("assign", {**VALID_ARGS["assign"], "pickup_code": "48-29-13"}, "pickup_code"),
    ("assign", {**VALID_ARGS["assign"], "assignment_id": "has space"}, "assignment_id"),
    ("assign", {**VALID_ARGS["assign"], "assignment_id": "x" * 65}, "assignment_id"),
    ("assign", {**VALID_ARGS["assign"], "size": "S" * 17}, "size"),
    ("assign", {**VALID_ARGS["assign"], "hold_period_h": 0}, "hold_period_h"),
    ("assign", {**VALID_ARGS["assign"], "barcode": ""}, "barcode"),
    ("extend", {"assignment_id": "p-1", "hours": -1}, "hours"),
    ("extend", {"assignment_id": "p-1", "hours": 1441}, "hours"),
    ("cancel", {"assignment_id": "p-1", "reason": "   "}, "reason"),
    ("cancel", {"assignment_id": "p-1", "reason": "x" * 201}, "reason"),
    ("grant_courier", {"courier_id": "c-1", "code": COURIER,
                       "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ("set_config", {"remote_open_limit": 101}, "remote_open_limit"),
    ("set_config", {"remote_open_window_s": 0}, "remote_open_window_s"),
    ("set_config", {"telemetry_interval_s": 5}, "telemetry_interval_s"),
])
def test_out_of_range_args_name_the_field(
    agent: Agent, name: str, args: dict[str, Any], field: str
) -> None:
    refused(command(agent, name, args), "invalid", f"args.{field}")


def test_several_problems_are_counted_in_the_message(agent: Agent) -> None:
    error = refused(command(agent, "assign", {"pickup_code": 1, "colour": "red"}), "invalid",
                    "args.assignment_id")
    assert "(and 2 more problems)" in error.message


# ------------------------------------------------------------------ domain refusals


Setup = list[tuple[str, dict[str, Any]]]
ASSIGN_P1 = ("assign", {"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})

DOMAIN_CASES = [
    pytest.param([("assign", {"assignment_id": "p-1", "pickup_code": PICKUP, "size": "XL"})],
                 "assign", {"assignment_id": "p-2", "pickup_code": "Bb223344", "size": "XL"},
                 "locker_full", "args.size", id="locker_full"),
    pytest.param([], "assign", {"assignment_id": "p-1", "pickup_code": PICKUP, "size": "XXL"},
                 "invalid", "args.size", id="unknown size"),
    pytest.param([], "announce_return",
                 {"assignment_id": "r-1", "size": "XXL", "return_code": RETURN},
                 "invalid", "args.size", id="unknown return size"),
    pytest.param([], "assign", {"assignment_id": "p-1", "pickup_code": PICKUP},
                 "invalid", "args.size", id="neither size nor compartment"),
    pytest.param([], "grant_courier", {"courier_id": "c-1", "code": COURIER,
                                       "expires_at": "2020-01-01T00:00:00+00:00"},
                 "invalid", "args.expires_at", id="courier code already expired"),
    pytest.param([], "set_service", {"in_service": False, "compartment_id": "A01"},
                 "invalid", "args.reason", id="out of service without a reason"),
    pytest.param([ASSIGN_P1], "remote_pickup", {"assignment_id": "p-1"},
                 "invalid_state", "args.assignment_id", id="remote pickup not deposited"),
    pytest.param([], "set_service", {"in_service": False, "reason": "x"}, None, None,
                 id="whole locker out of service"),
    pytest.param(
        [ASSIGN_P1], "assign", {"assignment_id": "p-1", "pickup_code": "Cc445566",
                                "size": "S"},
        "duplicate_assignment", "args.assignment_id", id="duplicate assignment"),
    pytest.param(
        [], "cancel", {"assignment_id": "p-9", "reason": "x"}, "unknown_assignment",
        "args.assignment_id", id="cancel unknown"),
    pytest.param(
        [ASSIGN_P1, ("cancel", {"assignment_id": "p-1", "reason": "x"})], "cancel",
        {"assignment_id": "p-1", "reason": "x"}, "invalid_state", "args.assignment_id",
        id="cancel cancelled"),
    pytest.param(
        [], "extend", {"assignment_id": "p-9", "hours": 1}, "unknown_assignment",
        "args.assignment_id", id="extend unknown"),
    pytest.param(
        [], "revoke_code", {"assignment_id": "p-9"}, "unknown_assignment",
        "args.assignment_id", id="revoke_code unknown"),
    pytest.param(
        [], "remote_pickup", {"assignment_id": "p-9"}, "unknown_assignment",
        "args.assignment_id", id="remote_pickup unknown"),
    pytest.param(
        [], "open", {"compartment_id": "Z99", "reason": "x", "operator": "op"},
        "unknown_compartment", "args.compartment_id", id="open unknown compartment"),
    pytest.param(
        [], "set_service", {"in_service": False, "compartment_id": "Z99", "reason": "x"},
        "unknown_compartment", "args.compartment_id", id="set_service unknown compartment"),
    pytest.param(
        [], "assign", {"assignment_id": "p-1", "pickup_code": PICKUP, "compartment_id": "Z99"},
        "unknown_compartment", "args.compartment_id", id="assign unknown compartment"),
    pytest.param(
        [ASSIGN_P1], "assign",
        {"assignment_id": "p-2", "pickup_code": "Dd667788", "compartment_id": "A01"},
        "compartment_unavailable", "args.compartment_id", id="assign taken compartment"),
]


@pytest.mark.parametrize("setup,name,args,code,field", DOMAIN_CASES)
def test_domain_refusals_name_the_argument_to_blame(
    agent: Agent, setup: Setup, name: str, args: dict[str, Any], code: str | None,
    field: str | None,
) -> None:
    for setup_name, setup_args in setup:
        ok(command(agent, setup_name, setup_args))
    events_before = event_types(agent)
    document = envelope(args)
    reply = send(agent, name, document)
    if code is None:
        ok(reply)
        # a repeated state change answers ok and changes nothing
        ok(command(agent, name, args))
        assert event_types(agent) == [*events_before, "out_of_service"]
        return
    refused(reply, code, field)
    assert event_types(agent) == events_before
    if field is not None:
        argument = field.removeprefix("args.")
        assert argument in c.COMMAND_ARGS[name].model_fields, (
            f"{field} is not an argument of {name}")
    assert agent.store.inbox_reply(document["id"]) == reply.model_dump(mode="json")


# --------------------------------------------------------------------- at most once


def test_the_same_id_twice_gets_the_same_reply_and_one_set_of_events(agent: Agent) -> None:
    document = envelope({"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})
    first = send(agent, "assign", document)
    second = send(agent, "assign", document)
    assert first == second and first.ok
    assert event_types(agent) == ["reserved"]
    assert agent.store.inbox_reply(document["id"]) == first.model_dump(mode="json")
    # except ping: anyone may send it, so it is answered afresh and never written down
    ping = envelope()
    again = send(agent, "ping", ping), send(agent, "ping", ping)
    assert all(reply.ok and reply.id == ping["id"] for reply in again)
    assert agent.store.inbox_reply(ping["id"]) is None


def test_a_refused_id_stays_refused_even_once_it_would_succeed(agent: Agent) -> None:
    cancel = envelope({"assignment_id": "p-1", "reason": "changed my mind"})
    first = send(agent, "cancel", cancel)
    refused(first, "unknown_assignment", first.error.field if first.error else None)
    ok(assign(agent, "p-1"))
    # the redelivery would now succeed, but this id was answered already
    assert send(agent, "cancel", cancel) == first
    assert agent.service.locker.assignments["p-1"].status is AssignmentStatus.RESERVED
    assert event_types(agent) == ["reserved"]


def test_an_unknown_or_invalid_command_id_is_remembered_too(agent: Agent) -> None:
    document = envelope({"assignment_id": "p-1", "pickup_code": "12", "size": "S"})
    first = send(agent, "assign", document)
    refused(first, "invalid", "args.pickup_code")
    document["args"]["pickup_code"] = PICKUP  # same id, now valid: still the first answer
    assert send(agent, "assign", document) == first
    unknown = envelope()
    assert send(agent, "frobnicate", unknown) == send(agent, "frobnicate", unknown)
    assert agent.store.all_events() == []


def _fail_once(monkeypatch: pytest.MonkeyPatch, agent: Agent) -> list[int]:
    calls: list[int] = []
    real = agent.store.commit

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        return real(*args, **kwargs)

    monkeypatch.setattr(agent.store, "commit", flaky)
    return calls


def test_a_failed_commit_answers_internal_applies_nothing_and_the_redelivery_applies_once(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fail_once(monkeypatch, agent)
    document = envelope({"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})
    first = send(agent, "assign", document)
    refused(first, "internal")
    assert first.id == document["id"] and calls == [1]
    assert "p-1" not in agent.service.locker.assignments
    assert agent.service.locker.free_by_size()["S"] == 3
    assert agent.store.all_events() == [] and agent.store.assignments() == []
    assert agent.store.inbox_reply(document["id"]) is None
    # the disk is back: the redelivery applies it, exactly once
    second = send(agent, "assign", document)
    assert ok(second)["compartment_id"] == "A01"
    assert send(agent, "assign", document) == second
    assert event_types(agent) == ["reserved"]


def test_a_failed_commit_of_set_config_changes_no_policy(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor = agent.processor
    assert processor is not None
    before = processor.policies
    _fail_once(monkeypatch, agent)
    document = envelope({"remote_open_limit": 1})
    refused(send(agent, "set_config", document), "internal")
    assert processor.policies == before and agent.store.policy_overrides() == {}
    assert ok(send(agent, "set_config", document))["policies"]["remote_open_limit"] == 1
    assert processor.policies.remote_open_limit == 1


def test_the_inbox_row_is_written_in_the_same_transaction_as_the_change(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: Store, conn: Any, events: Any) -> Any:
        raise OSError(5, "power lost while writing the outbox")

    monkeypatch.setattr(Store, "_append_events", crash)
    document = envelope({"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})
    refused(send(agent, "assign", document), "internal")
    # the state change was written first in that transaction, and the inbox row with it;
    # neither survived the failure of the last write
    assert agent.store.inbox_reply(document["id"]) is None
    assert inbox_rows(agent) == 0
    assert agent.store.assignments() == []
    assert agent.store.execute_sql("SELECT count(*) FROM credential")[0][0] == 0
    monkeypatch.undo()
    ok(send(agent, "assign", document))
    assert inbox_rows(agent) == 1 and event_types(agent) == ["reserved"]


def test_a_redelivery_after_expiry_still_gets_the_original_reply(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = envelope({"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"},
                        expires_in=timedelta(seconds=30))
    first = send(agent, "assign", document)
    ok(first)
    later = datetime.now(UTC) + timedelta(minutes=1)
    monkeypatch.setattr(agent.service, "_now", lambda: later)
    assert send(agent, "assign", document) == first


def test_an_opening_whose_commit_failed_does_not_count_towards_the_limit(
    make_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent(policies={"remote_open_limit": 1, "remote_open_window_s": 600})
    _fail_once(monkeypatch, agent)
    document = envelope(OPEN_ARGS)
    refused(send(agent, "open", document), "internal")
    assert agent.service.locker.intents == {}
    reply = send(agent, "open", document)
    assert "remote_open_alarm" not in event_types(agent)
    ok(reply)


# ----------------------------------------------------------------------- secrecy


def test_codes_never_appear_in_replies_events_logs_or_the_database(
    make_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    agent = make_agent(auto_close=0.05)
    replies: list[c.Reply] = []

    def say(name: str, args: dict[str, Any]) -> c.Reply:
        reply = command(agent, name, args)
        replies.append(reply)
        return reply

    async def scenario() -> None:
        ok(say("assign", {"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"}))
        # refusals of every kind with the codes in them
        say("assign", {"assignment_id": "p-2", "pickup_code": PICKUP, "size": "S"})
        say("assign", {"assignment_id": "p-1", "pickup_code": PICKUP, "size": "S"})
        say("assign", {"assignment_id": "p-3", "pickup_code": PICKUP, "size": "S",
                       "colour": PICKUP})
        say("assign", {"assignment_id": "p-3", "pickup_code": PICKUP + "-", "size": "S"})
        ok(say("announce_return", {"assignment_id": "r-1", "size": "M",
                                   "return_code": RETURN}))
        say("announce_return", {"assignment_id": "r-2", "size": "M", "return_code": RETURN})
        ok(say("grant_courier", {"courier_id": "c-1", "code": COURIER}))
        say("grant_courier", {"courier_id": "c-2", "code": COURIER})
        await deposit(agent, "p-1")
        ok(say("sync", {}))
        ok(say("remote_pickup", {"assignment_id": "p-1"}))
        await until(lambda: "picked_up" in event_types(agent), "picked up")
        say("revoke_code", {"assignment_id": "r-1"})  # r-2's collision withdrew it already
        ok(say("revoke_courier", {"courier_id": "c-1"}))
        # a failed commit, with its traceback in the log
        monkeypatch.setattr(Store, "_append_events", _raise_oserror)
        refused(say("assign", {"assignment_id": "p-4", "pickup_code": "Ee12345678",
                               "size": "S"}), "internal")
        monkeypatch.undo()

    run(agent, scenario)
    texts = [r.model_dump_json() for r in replies]
    texts += [json.dumps(e.as_message(LOCKER)) for e in agent.store.all_events()]
    for formatter in (KeyValueFormatter(), JsonFormatter()):
        texts += [formatter.format(record) for record in caplog.records]
    assert len(caplog.records) > 10
    blobs = [path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in tmp_path.rglob("*"))
    for code in (PICKUP, RETURN, COURIER, "Ee12345678"):
        assert not [t for t in texts if code in t], code
        assert not [b for b in blobs if code.encode() in b], code


def _raise_oserror(*_: object) -> Any:
    raise OSError(5, "Input/output error")
