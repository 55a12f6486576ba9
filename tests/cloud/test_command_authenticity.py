"""Only the operator's keys command a locker, and the locker's clock cannot be turned back.

In-process, as ``tests/cloud/test_commands.py``: a real agent from the composition root,
``processor.handle`` called as the link calls it. The broker-level attacks are in
``test_broker_attacker.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.config import load_config
from locker_agent.contract import messages as c
from locker_agent.contract.signing import canonical_command, public_key_base64, sign
from locker_agent.contract.tokens import sign_pickup_token
from locker_agent.ctl.client import seal_and_sign
from locker_agent.domain.errors import InvalidCode
from locker_agent.runtime.daemon import Agent, build_agent
from tests.conftest import ConfigWriter
from tests.support.operator import OPERATOR_KEY, OPERATOR_PUBLIC, as_operator_document

pytestmark = pytest.mark.usefixtures("clean_env")

LOCKER = "test-locker"
OTHER_KEY = Ed25519PrivateKey.generate()
VALID_ARGS: dict[str, dict[str, Any]] = {
    "assign": {"assignment_id": "p-1", "pickup_code": "48291300", "size": "S"},
    "cancel": {"assignment_id": "p-0", "reason": "x"},
    "extend": {"assignment_id": "p-0", "hours": 2},
    "announce_return": {"assignment_id": "r-1", "size": "S", "return_code": "R1234567"},
    "grant_courier": {"courier_id": "c-1", "code": "C1234567"},
    "revoke_courier": {"courier_id": "c-1"},
    "revoke_code": {"assignment_id": "p-0"},
    "remote_pickup": {"assignment_id": "p-0"},
    "open": {"compartment_id": "A01", "reason": "audit", "operator": "op-1"},
    "set_service": {"in_service": False, "reason": "x"},
    "sync": {}, "ping": {},
    "set_config": {"remote_open_limit": 1, "hold_period_h": 1},
    "clear_alarm": {"operator": "op-1", "reason": "checked"},
    "replay_events": {"from_seq": 1},
}


@pytest.fixture
def agent(write_config: ConfigWriter) -> Iterator[Agent]:
    built = build_agent(load_config(write_config(
        mqtt={"host": "127.0.0.1", "port": 1, "reconnect_min_s": 5.0})))
    assert built.processor is not None
    try:
        yield built
    finally:
        built.store.close()


def envelope(args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()),
            "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            "args": args} | extra


def handle(agent: Agent, name: str, document: dict[str, Any]) -> c.Reply:
    assert agent.processor is not None
    return agent.processor.handle(name, json.dumps(document).encode()).reply


def everything_kept(agent: Agent) -> dict[str, Any]:
    """Every row of every table, as the file holds it."""
    tables = [row[0] for row in agent.store.execute_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {table: agent.store.execute_sql(f"SELECT * FROM {table}") for table in tables}


# ------------------------------------------------------------- no signature, no change

SIGNATURE = st.one_of(
    st.none(),
    st.text(max_size=90),
    st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
)
HOW = st.sampled_from(["unsigned", "garbage", "another key", "another key named",
                       "for another locker", "for another command", "altered after signing"])


@st.composite
def unauthentic(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A command whatever its name and arguments, not signed by a key the locker holds."""
    name = draw(st.one_of(st.sampled_from(sorted(c.SIGNED_COMMANDS)),
                          st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)))
    args = dict(VALID_ARGS.get(name, {}))
    for key in draw(st.lists(st.sampled_from(sorted(args) or ["x"]), max_size=2)):
        args[key] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=20),
                                   st.booleans()))
    document = envelope(args)
    how = draw(HOW)
    if how == "garbage":
        document["signature"] = draw(SIGNATURE)
        if draw(st.booleans()):
            document["key_id"] = draw(st.text("0123456789abcdef", min_size=16, max_size=16))
    elif how == "another key":
        document = seal_and_sign(LOCKER, name, document, sign_with=OTHER_KEY, seal_for=None)
        document.pop("key_id")
    elif how == "another key named":
        document = seal_and_sign(LOCKER, name, document, sign_with=OTHER_KEY, seal_for=None)
    elif how == "for another locker":
        document = seal_and_sign("other-locker", name, document, sign_with=OPERATOR_KEY,
                                 seal_for=None)
    elif how == "for another command":
        other = "ping" if name != "ping" else "open"
        document = seal_and_sign(LOCKER, other, document, sign_with=OPERATOR_KEY, seal_for=None)
    elif how == "altered after signing":
        document = as_operator_document(LOCKER, name, document)
        document["args"] = {**document["args"], "reason": "altered"}
    return name, document


def test_no_command_without_a_valid_signature_changes_anything(agent: Agent) -> None:
    # a parcel inside, a courier, a door to open: something worth changing
    operator = as_operator_document
    assert handle(agent, "assign", operator(LOCKER, "assign", envelope(
        {"assignment_id": "p-0", "pickup_code": "11223344", "size": "S"}))).ok
    refused: set[str] = set()

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(unauthentic())
    def check(command: tuple[str, dict[str, Any]]) -> None:
        name, document = command
        before = everything_kept(agent)
        reply = handle(agent, name, document)
        assert not reply.ok, (name, document, reply)
        assert reply.error is not None
        refused.add(reply.error.code)
        assert everything_kept(agent) == before, (name, document)
        assert agent.service.locker.intents == {}

    check()
    assert {"bad_signature", "unknown_key"} <= refused, refused


def test_ping_needs_no_signature_and_writes_nothing(agent: Agent) -> None:
    before = everything_kept(agent)
    assert handle(agent, "ping", envelope({})).ok
    assert everything_kept(agent) == before


# ------------------------------------------------------------------- keys and rotation


def test_a_named_key_is_the_one_checked_and_a_removed_key_is_refused(
    write_config: ConfigWriter,
) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()

    def build(*keys: Ed25519PrivateKey) -> Agent:
        return build_agent(load_config(write_config(
            mqtt={"host": "127.0.0.1", "port": 1},
            security={"operator_public_keys": [public_key_base64(k) for k in keys]})))

    def open_signed(agent: Agent, key: Ed25519PrivateKey, *, named: bool = True) -> c.Reply:
        document = seal_and_sign(LOCKER, "set_service", envelope(
            {"in_service": True}), sign_with=key, seal_for=None)
        if not named:
            document = seal_and_sign(LOCKER, "set_service", {
                k: v for k, v in document.items() if k not in ("key_id", "signature")},
                sign_with=None, seal_for=None)
            document["signature"] = sign(key, canonical_command(
                LOCKER, "set_service", document["id"], document["expires_at"],
                document["args"]))
        return handle(agent, "set_service", document)

    rotating = build(old, new)  # while the key is rotated, both are held
    try:
        assert open_signed(rotating, old).ok and open_signed(rotating, new).ok
        assert open_signed(rotating, new, named=False).ok  # no key id: every key is tried
    finally:
        rotating.store.close()
    rotated = build(new)  # the old key removed
    try:
        reply = open_signed(rotated, old)
        assert reply.error is not None and reply.error.code == "unknown_key"
        reply = open_signed(rotated, old, named=False)
        assert reply.error is not None and reply.error.code == "bad_signature"
        assert open_signed(rotated, new).ok
    finally:
        rotated.store.close()


# ---------------------------------------------------------------------------- the clock


def with_token_key(path: Path) -> Path:
    """The config at ``path`` with the test operator's key trusted for signed QR tokens."""
    path.write_text(path.read_text().replace(
        "[[compartments]]", f'[tokens]\npublic_keys = ["{OPERATOR_PUBLIC}"]\n\n[[compartments]]',
        1))
    return path


def test_the_wall_clock_set_back_cannot_turn_the_lockers_time_back(
    write_config: ConfigWriter,
) -> None:
    config = load_config(with_token_key(write_config(mqtt={"host": "127.0.0.1", "port": 1})))
    agent = build_agent(config)
    try:
        latest = agent.service.now()
        assert handle(agent, "assign", as_operator_document(LOCKER, "assign", envelope(
            VALID_ARGS["assign"]))).ok
    finally:
        agent.store.close()
    # the board restarts with its clock a day behind (no RTC, no network yet)
    agent = build_agent(config)
    try:
        agent.service._now = lambda: datetime.now(UTC) - timedelta(days=1)  # type: ignore[method-assign]
        assert agent.service.now() >= latest
        # a token that expired while the clock was behind does not come back
        expired = sign_pickup_token(OPERATOR_KEY, locker_id=LOCKER, assignment_id="p-1",
                                    expires_at=latest - timedelta(minutes=10))  # past any skew
        with pytest.raises(InvalidCode) as refused:
            agent.service.gate.verify_token(expired, agent.service.now())
        assert refused.value.reason == "token_expired"
    finally:
        agent.store.close()


def test_until_the_clock_is_synchronised_tokens_and_commands_are_refused(
    write_config: ConfigWriter,
) -> None:
    config = load_config(with_token_key(write_config(
        mqtt={"host": "127.0.0.1", "port": 1}, security={"wall_clock": "synchronised"})))
    agent = build_agent(config)
    try:
        synchronised = [False]
        agent.clock_trusted = lambda: synchronised[0]
        assert agent.processor is not None
        agent.processor._clock_trusted = lambda: synchronised[0]
        agent.service.gate._clock_trusted = lambda: synchronised[0]
        reply = handle(agent, "assign", as_operator_document(LOCKER, "assign", envelope(
            VALID_ARGS["assign"])))
        assert reply.error is not None
        assert (reply.error.code, reply.error.field) == ("clock_not_synchronised", "expires_at")
        assert handle(agent, "ping", envelope({})).ok  # still answered
        token = sign_pickup_token(OPERATOR_KEY, locker_id=LOCKER, assignment_id="p-1",
                                  expires_at=datetime.now(UTC) + timedelta(hours=1))
        with pytest.raises(InvalidCode) as refused:
            agent.service.gate.verify_token(token, agent.service.now())
        assert refused.value.reason == "token_clock_not_set"
        synchronised[0] = True
        assert handle(agent, "assign", as_operator_document(LOCKER, "assign", envelope(
            VALID_ARGS["assign"]))).ok
    finally:
        agent.store.close()


# ------------------------------------------------------- what a review of the change found


def test_an_authentic_command_refused_for_its_timing_is_never_applied_later(
    agent: Agent,
) -> None:
    too_far = as_operator_document(LOCKER, "open", envelope(
        VALID_ARGS["open"], expires_at=(datetime.now(UTC) + timedelta(days=8)).isoformat()))
    first = handle(agent, "open", too_far)
    assert first.error is not None and first.error.code == "invalid"
    # a door opening is meant for now: 15 minutes ahead at most
    later = as_operator_document(LOCKER, "open", envelope(
        VALID_ARGS["open"], expires_at=(datetime.now(UTC) + timedelta(minutes=20)).isoformat()))
    reply = handle(agent, "open", later)
    assert reply.error is not None and (reply.error.code, reply.error.field) == (
        "invalid", "expires_at")
    # the same message replayed (say, once its expiry came in range) gets the same refusal
    assert handle(agent, "open", too_far) == first
    assert agent.service.locker.intents == {}


def test_a_command_refused_before_the_clock_was_set_stays_refused(
    write_config: ConfigWriter,
) -> None:
    agent = build_agent(load_config(write_config(mqtt={"host": "127.0.0.1", "port": 1})))
    try:
        assert agent.processor is not None
        synchronised = [False]
        agent.processor._clock_trusted = lambda: synchronised[0]
        document = as_operator_document(LOCKER, "open", envelope(VALID_ARGS["open"]))
        first = handle(agent, "open", document)
        assert first.error is not None and first.error.code == "clock_not_synchronised"
        synchronised[0] = True
        assert handle(agent, "open", document) == first  # a replay opens nothing
        assert agent.service.locker.intents == {}
    finally:
        agent.store.close()


def test_a_ping_with_junk_writes_nothing_and_claims_no_id(agent: Agent) -> None:
    before = everything_kept(agent)
    command_id = str(uuid.uuid4())
    reply = handle(agent, "ping", envelope({"colour": 1}, id=command_id))
    assert reply.error is not None and reply.error.code == "invalid"
    assert everything_kept(agent) == before
    # the operator's command with that id is still its own
    document = as_operator_document(LOCKER, "set_service", envelope(
        {"in_service": True}, id=command_id))
    assert handle(agent, "set_service", document).ok


def test_allowing_unsigned_commands_is_ignored_on_a_locker_with_a_key(
    write_config: ConfigWriter,
) -> None:
    agent = build_agent(load_config(write_config(
        mqtt={"host": "127.0.0.1", "port": 1},
        security={"allow_unsigned_commands": True})))  # and the test operator's key
    try:
        reply = handle(agent, "open", envelope(VALID_ARGS["open"]))
        assert reply.error is not None and reply.error.code == "bad_signature"
        assert agent.service.locker.intents == {}
    finally:
        agent.store.close()


def test_a_key_given_twice_in_a_command_is_refused(agent: Agent) -> None:
    document = as_operator_document(LOCKER, "set_service", envelope({"in_service": True}))
    payload = json.dumps(document)[:-1] + ', "args": {"in_service": false, "reason": "x"}}'
    assert agent.processor is not None
    reply = agent.processor.handle("set_service", payload.encode()).reply
    assert reply.error is not None and reply.error.code == "invalid_json"
    assert "given twice" in reply.error.message
    assert agent.service.locker.in_service


def test_a_courier_code_with_an_end_date_waits_for_the_clock(
    write_config: ConfigWriter,
) -> None:
    agent = build_agent(load_config(write_config(mqtt={"host": "127.0.0.1", "port": 1})))
    try:
        assert handle(agent, "grant_courier", as_operator_document(LOCKER, "grant_courier",
            envelope({"courier_id": "c-1", "code": "C1234567",
                      "expires_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}))).ok
        assert handle(agent, "grant_courier", as_operator_document(LOCKER, "grant_courier",
            envelope({"courier_id": "c-2", "code": "C7654321"}))).ok
        synchronised = [False]
        agent.service.gate._clock_trusted = lambda: synchronised[0]
        desk = agent.courier_desk
        assert desk is not None

        async def sign_in(code: str) -> Any:
            await agent.service.start()
            try:
                return await desk.sign_in(CodeEntry("kiosk", code))
            finally:
                await agent.service.stop()

        outcome = asyncio.run(sign_in("C1234567"))
        assert not outcome.ok and outcome.reason == "token_clock_not_set"
        assert asyncio.run(sign_in("C7654321")).ok  # no end date: no clock needed
        synchronised[0] = True
        assert asyncio.run(sign_in("C1234567")).ok
    finally:
        agent.store.close()
