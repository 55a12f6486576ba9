"""No input crashes the daemon or opens a door.

In-process, Hypothesis throws arbitrary bytes, arbitrary JSON and plausible-but-wrong command
envelopes at the command processor of a running agent whose operator key is configured (so no
random ``open`` or ``remote_pickup`` can ever carry a valid signature). Against a real
Mosquitto, a few hundred malformed messages go to the agent's command topics and the agent
keeps answering.

Examples: ``CI`` set (the "ci" profile): 400 + 400 + 1400 = 2200; otherwise 40 + 40 + 120.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from locker_agent.cloud.commands import Answer
from locker_agent.contract import messages as c
from locker_agent.contract.signing import canonical_command, public_key_base64, verify
from locker_agent.contract.signing import key_id as operator_key_id
from locker_agent.domain import errors
from tests.cloud.harness import AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import MosquittoBroker, mosquitto  # noqa: F401 - fixture
from tests.support.operator import OPERATOR_KEY, as_operator_document

pytestmark = pytest.mark.usefixtures("clean_env")

LOCKER = "test-locker"
HORIZON = timedelta(hours=168)  # the default mqtt.command_horizon_h
CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def fuzz_settings(*, ci: int, dev: int) -> settings:
    """Our own example counts, whatever profile another conftest loaded."""
    return settings(
        max_examples=ci if CI else dev,
        deadline=None,
        derandomize=CI,
        database=None if CI else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


# -------------------------------------------------------------------- the oracle


def _domain_codes() -> set[str]:
    found: set[str] = set()
    pending: list[type[errors.DomainError]] = [errors.DomainError]
    while pending:
        cls = pending.pop()
        found.add(cls.code)
        pending.extend(cls.__subclasses__())
    return found


KNOWN_CODES = _domain_codes() | {
    "invalid", "invalid_json", "payload_too_large", "expired", "retained",
    "unknown_command", "bad_signature", "remote_open_refused", "internal", "duplicate_id",
    "unknown_key", "code_not_sealed", "loosening_refused", "held_back",
}
ENVELOPE_CODES = {"invalid_json", "payload_too_large", "expired", "retained", "unknown_command",
                  "bad_signature"}
BIG_INT = re.compile(r"\d{4300,}")


def has_huge_number(payload: bytes) -> bool:
    """A run of more digits than int() converts by default (in any encoding json accepts)."""
    try:
        text = payload.decode(json.detect_encoding(payload), "ignore")
    except LookupError:
        return False
    return bool(BIG_INT.search(text))


def _raw(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def signed_by_the_operator(name: str, raw: dict[str, Any]) -> bool:
    """Whether ``raw`` carries a valid signature by the test operator's key."""
    key_id = raw.get("key_id")
    if key_id is not None and key_id != operator_key_id(OPERATOR_KEY):
        return False
    message = canonical_command(
        LOCKER, name, raw.get("id"), raw.get("expires_at"), raw.get("args") or {}, key_id
    )
    signature = raw.get("signature")
    return verify(OPERATOR_KEY.public_key(), message,
                  signature if isinstance(signature, str) else None)


def genuinely_valid(name: str, payload: bytes, retained: bool, now: datetime) -> bool:
    """Whether the contract says this message must be applied."""
    if retained or len(payload) > c.MAX_PAYLOAD_BYTES:
        return False
    raw = _raw(payload)
    if not isinstance(raw, dict):
        return False
    try:
        envelope = c.CommandEnvelope.model_validate(raw)
    except ValidationError:
        return False
    if not now < envelope.expires_at <= now + HORIZON:
        return False
    model = c.COMMAND_ARGS.get(name)
    if model is None or (name in c.SIGNED_COMMANDS and not signed_by_the_operator(name, raw)):
        return False
    try:
        model.model_validate(envelope.args)
    except ValidationError:
        return False
    return True


def _encodable(text: str | None) -> bool:
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _courier_expiry_overflows(name: str, payload: bytes) -> bool:
    """grant_courier with an expires_at that is out of range once converted to UTC."""
    raw = _raw(payload)
    if name != "grant_courier" or not isinstance(raw, dict):
        return False
    args = raw.get("args")
    if not isinstance(args, dict) or not isinstance(args.get("expires_at"), str):
        return False
    try:
        value = datetime.fromisoformat(args["expires_at"].replace("Z", "+00:00"))
        if value.tzinfo is not None:
            value.astimezone(UTC)
    except OverflowError:
        return True
    except ValueError:
        return False
    return False


def check_answer(
    name: str, payload: bytes, retained: bool, answer: Answer, prior: dict[str, Any] | None,
    before: datetime, after: datetime,
) -> None:
    """Everything a reply to any input must satisfy."""
    assert isinstance(answer, Answer)
    reply = c.Reply.model_validate(answer.reply.model_dump())
    assert reply.ok == (reply.error is None), reply
    if reply.ok:
        assert isinstance(reply.result, dict)
        replayed = prior is not None and reply.model_dump(mode="json") == prior
        assert replayed or (
            reply.command == name
            and (genuinely_valid(name, payload, retained, before)
                 or genuinely_valid(name, payload, retained, after))
        ), f"ok for an invalid command: {name} {payload[:300]!r} retained={retained}"
    else:
        assert reply.error is not None and reply.error.code in KNOWN_CODES, reply.error
        if prior is None and genuinely_valid(name, payload, retained, before) \
                and genuinely_valid(name, payload, retained, after):
            # valid for the contract: only the locker's own reasons may refuse it
            assert reply.error.code not in ENVELOPE_CODES, (name, payload[:300], reply.error)
            assert (reply.error.field or "args.").startswith("args."), reply.error
        assert reply.error.code != "internal", f"internal error for {name} {payload[:300]!r}"
    raw = _raw(payload)
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    assert reply.id is None or reply.id == raw_id or (prior is not None and reply.id == prior["id"])
    c.Reply.model_validate_json(reply.model_dump_json())  # every reply can be sent
    topic = answer.reply_to
    assert topic is None or (
        isinstance(topic, str) and 0 < len(topic) <= 256
        and not {"+", "#", "\0"} & set(topic)
        and "/cmd/" not in f"/{topic}/"  # a reply must never land on a command topic
    )


# ------------------------------------------------------------------------ the agent


@pytest.fixture
def running(write_config: ConfigWriter) -> Iterator[AgentThread]:
    """A started agent with an operator key nobody here holds, and its link stopped."""
    key = Ed25519PrivateKey.generate()
    config = write_config(
        mqtt={"host": "127.0.0.1", "port": 1, "reconnect_min_s": 5.0,
              "operator_public_key": public_key_base64(key)},
        auto_close=0.05,
    )
    with AgentThread(config) as thread:
        assert thread.agent is not None and thread.agent.link is not None
        # the processor is all we need; a link retrying in the background would also draw
        # from the global random module while Hypothesis generates data
        thread.run(thread.agent.link.stop())
        yield thread


def exchange(thread: AgentThread, name: str, payload: bytes, retained: bool) -> c.Reply:
    """Hand one message to the processor on the agent's loop and check the answer."""
    agent = thread.agent
    assert agent is not None and agent.processor is not None
    processor = agent.processor

    def go() -> tuple[dict[str, Any] | None, datetime, Answer, datetime]:
        raw = _raw(payload)
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        prior = (agent.store.inbox_reply(raw_id)
                 if isinstance(raw_id, str) and _encodable(raw_id) else None)
        before = datetime.now(UTC)
        answer = processor.handle(name, payload, retained=retained)  # must not raise
        return prior, before, answer, datetime.now(UTC)

    prior, before, answer, after = thread.call(go)
    check_answer(name, payload, retained, answer, prior, before, after)
    return answer.reply


def assert_no_door_moved_and_ping_answers(thread: AgentThread) -> None:
    agent = thread.agent
    assert agent is not None and agent.simulator is not None
    assert thread._thread.is_alive()
    assert agent.simulator.pulses == []
    assert thread.call(lambda: dict(agent.service.locker.intents)) == {}
    types = thread.call(lambda: [e.type for e in agent.store.all_events()])
    assert "unlock_requested" not in types and "door_opened" not in types
    document = {"id": str(uuid.uuid4()),
                "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}
    answer = thread.call(lambda: agent.processor.handle(  # type: ignore[union-attr]
        "ping", json.dumps(document).encode()))
    assert answer.reply.ok, answer.reply


# --------------------------------------------------------------------- strategies


COMMANDS = sorted(c.COMMAND_ARGS)
names = st.one_of(
    st.sampled_from(COMMANDS),
    st.sampled_from(COMMANDS),
    st.sampled_from(COMMANDS),
    st.sampled_from(COMMANDS),
    st.from_regex(r"[a-z_]{1,32}", fullmatch=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
ID_POOL = [str(uuid.UUID(int=n)) for n in range(1, 6)]
FRESH_IDS = st.builds(lambda: str(uuid.uuid4()))
"""Not st.uuids(): Hypothesis would hand out the same few simple UUIDs again and again."""
ids = st.one_of(
    st.sampled_from(ID_POOL),
    st.uuids().map(str),
    st.from_regex(r"[0-9a-fA-F-]{30,38}", fullmatch=True),
    st.text(max_size=40),
    st.just("\ud800" * 32),  # a lone surrogate, JSON-escaped on the wire
    json_values,
)


@st.composite
def instants(draw: st.DrawFn, *, valid: bool = False) -> Any:
    """expires_at values: valid, expired, too far ahead, naive, odd zones, or not a date."""
    kinds = ["valid"] if valid else ["valid", "past", "beyond", "date", "junk"]
    kind = draw(st.sampled_from(kinds))
    if kind == "junk":
        return draw(json_values | st.sampled_from(["tomorrow", "", "2030-13-45T00:00:00Z"]))
    if kind == "date":
        moment = draw(st.datetimes(timezones=st.none() | st.just(UTC)))
        return moment.isoformat()
    span = {
        "valid": (60.0, HORIZON.total_seconds() - 60),
        "past": (-3 * 86400.0, -60.0),
        "beyond": (HORIZON.total_seconds() + 60, 1e9),
    }[kind]
    moment = datetime.now(UTC) + timedelta(seconds=draw(st.floats(*span)))
    zones = ["utc", "z", "offset"] if valid else ["utc", "z", "offset", "naive"]
    zone = draw(st.sampled_from(zones))
    if zone == "offset":
        return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    if zone == "naive":
        return moment.replace(tzinfo=None).isoformat()
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if zone == "z" else text


IDENTIFIERS = ["p-1", "p-2", "r-1", "c-1", "A01", "A02", "A06", "Z99", "op-1", "", " ",
               "a" * 65, "ü"]
CODES = ["48291300", "AB12cd34", "12", "", "x" * 33, "48 29 13", "99911100"]
HOURS = st.floats() | st.integers(-10, 2000)
WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(
        ["assignment_id", "courier_id", "compartment_id", "operator", "customer_ref"],
        st.sampled_from(IDENTIFIERS) | st.text(max_size=70),
    ),
    **dict.fromkeys(["pickup_code", "return_code", "code"],
                    st.sampled_from(CODES) | st.text(max_size=40)),
    "size": st.sampled_from(["XXL", "s", "", "S" * 17]),
    "reason": st.sampled_from(["", "   ", "x" * 201]),
    "barcode": st.sampled_from(["", "b" * 65]),
    **dict.fromkeys(["hours", "hold_period_h", "valid_h", "reservation_ttl_h"], HOURS),
    "remote_open_limit": st.integers(-5, 200) | st.booleans(),
    **dict.fromkeys(["remote_open_window_s", "telemetry_interval_s"], HOURS),
    **dict.fromkeys(["in_service", "accessible", "hold_compartment"],
                    st.sampled_from(["yes", "true", 1, 0, None])),
    "expires_at": st.sampled_from(["2030-01-01T00:00:00", "2020-01-01T00:00:00Z", "soon", ""]),
    **dict.fromkeys(["from_seq", "to_seq"], st.integers(-5, 10**20)),
}
"""Values of each argument that are (mostly) wrong, and of the right-looking kind."""

IDENTIFIER = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True)
CODE = st.from_regex(r"[A-Za-z0-9]{4,32}", fullmatch=True)
COURIER_EXPIRY = st.floats(60, 30 * 86400).map(
    lambda s: (datetime.now(UTC) + timedelta(seconds=s)).isoformat())
VALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(["assignment_id", "customer_ref"],
                    st.sampled_from(["p-1", "p-2", "p-3", "r-1", "r-2"]) | IDENTIFIER),
    **dict.fromkeys(["courier_id", "operator"], st.sampled_from(["c-1", "op-1"]) | IDENTIFIER),
    "compartment_id": st.sampled_from(["A01", "A02", "A03", "A04", "A05", "A06"]) | IDENTIFIER,
    **dict.fromkeys(["pickup_code", "return_code", "code"],
                    st.sampled_from(["48291300", "AB12cd34", "99911100"]) | CODE),
    "size": st.sampled_from(["S", "M", "L", "XL"]),
    "reason": st.text(min_size=1, max_size=200).filter(lambda text: bool(text.strip())),
    "barcode": st.text(min_size=1, max_size=64),
    **dict.fromkeys(["hours", "hold_period_h", "valid_h", "reservation_ttl_h"],
                    st.floats(0.01, 1440) | st.integers(1, 1440)),
    "remote_open_limit": st.integers(0, 100),
    "remote_open_window_s": st.floats(0.1, 86400),
    "telemetry_interval_s": st.floats(10, 86400),
    **dict.fromkeys(["in_service", "accessible", "hold_compartment"], st.booleans()),
    "expires_at": COURIER_EXPIRY,
    **dict.fromkeys(["from_seq", "to_seq"], st.integers(1, 100)),
}
"""Values of each argument that the contract accepts (the locker may still refuse them)."""


def test_the_strategies_know_every_argument() -> None:
    fields = {f for model in c.COMMAND_ARGS.values() for f in model.model_fields}
    assert fields <= set(VALID_VALUES) and fields <= set(WRONG_VALUES)


@st.composite
def valid_args(draw: st.DrawFn, model: type[Any]) -> dict[str, Any]:
    args = {}
    for field, info in model.model_fields.items():
        if info.is_required() or draw(st.booleans()):
            args[field] = draw(VALID_VALUES.get(field, json_values))
    return args


SIGNATURES = st.one_of(
    st.text(max_size=100),
    st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.just("x" * 201),
)
REPLY_TOPICS = st.one_of(
    st.just(f"lockers/{LOCKER}/elsewhere"), st.just(""), st.just("a/+/b"), st.just("#"),
    st.just(f"lockers/{LOCKER}/cmd/open"), st.just("cmd"), st.just("lockers/other/cmd/ping"),
    st.just("x" * 257), json_values,
)
DEFECTS = [
    "no id", "no expires_at", "no args", "id", "expires_at", "args not an object",
    "wrong argument", "random argument", "no required argument", "extra argument",
    "extra field", "field of another type", "signature", "reply_to", "truncated",
    "bytes inserted", "huge number", "utf-16", "padded to the limit", "retained",
]


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """A well-formed command with zero or more defects drawn at random.

    With no defect it is valid for the contract, and the locker must apply it or refuse it
    for its own reasons; each defect is something a sender gets wrong.
    """
    name = draw(names)
    model = c.COMMAND_ARGS.get(name) or draw(st.sampled_from(list(c.COMMAND_ARGS.values())))
    document: dict[str, Any] = {
        # a fresh id mostly; one of a few shared ids sometimes, to meet the inbox
        "id": (draw(st.sampled_from(ID_POOL)) if draw(st.integers(0, 7)) == 7
               else draw(FRESH_IDS)),
        "expires_at": draw(instants(valid=True)),
        "args": draw(valid_args(model)),
    }
    args: dict[str, Any] = document["args"]
    retained = False
    defects = draw(st.lists(st.sampled_from(DEFECTS), max_size=3))
    for defect in defects:
        if defect.startswith("no ") and defect[3:] in document:
            document.pop(defect[3:])
        elif defect == "id":
            document["id"] = draw(ids)
        elif defect == "expires_at":
            document["expires_at"] = draw(instants())
        elif defect == "args not an object":
            document["args"] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        elif defect in ("wrong argument", "random argument") and args:
            field = draw(st.sampled_from(sorted(args)))
            args[field] = draw(WRONG_VALUES.get(field, json_values)
                               if defect == "wrong argument" else json_values)
        elif defect == "no required argument" and args:
            args.pop(draw(st.sampled_from(sorted(args))))
        elif defect == "extra argument":
            args[draw(st.text(max_size=8))] = draw(json_values)
        elif defect == "extra field":
            document[draw(st.text(max_size=10))] = draw(json_values)
        elif defect == "field of another type" and document:
            document[draw(st.sampled_from(sorted(document)))] = draw(json_values)
        elif defect == "signature":
            document["signature"] = draw(SIGNATURES)
        elif defect == "reply_to":
            document["reply_to"] = draw(REPLY_TOPICS)
        elif defect == "retained":
            retained = True
    if ("signature" not in defects and name not in c.DOOR_OPENING_COMMANDS
            and draw(st.integers(0, 3)) > 0):
        # mostly signed (and sealed) by the operator the locker trusts, as the contract wants;
        # never a door opening: signed, it is legitimate, and here no door may move
        document = as_operator_document(LOCKER, name, document, seal=draw(st.booleans()))
    payload = json.dumps(document).encode()
    for defect in defects:
        if defect == "truncated" and payload:
            payload = payload[: draw(st.integers(0, len(payload) - 1))]
        elif defect == "bytes inserted":
            at = draw(st.integers(0, len(payload)))
            payload = payload[:at] + draw(st.binary(min_size=1, max_size=3)) + payload[at:]
        elif defect == "huge number":
            payload = payload.replace(b'{"id": ', b'{"id": ' + b"7" * 4400 + b', "id": ', 1)
        elif defect == "utf-16":
            payload = payload.decode("utf-8", "replace").encode("utf-16")
        elif defect == "padded to the limit":
            payload += b" " * (c.MAX_PAYLOAD_BYTES - len(payload) + draw(st.integers(-2, 2)))
    return name, payload, retained


big_payloads = st.builds(
    lambda n, fill: fill * n,
    st.integers(c.MAX_PAYLOAD_BYTES - 3, c.MAX_PAYLOAD_BYTES + 3),
    st.sampled_from([b"{", b"[", b" ", b"\xff"]),
)


# ----------------------------------------------------------------- in-process fuzzing


def test_arbitrary_bytes_never_crash_or_open_a_door(running: AgentThread) -> None:
    @fuzz_settings(ci=400, dev=40)
    @given(names, st.binary(max_size=512) | big_payloads, st.booleans())
    def fuzz(name: str, payload: bytes, retained: bool) -> None:
        exchange(running, name, payload, retained)

    fuzz()
    assert_no_door_moved_and_ping_answers(running)


def test_arbitrary_json_never_crashes_or_opens_a_door(running: AgentThread) -> None:
    keys = st.sampled_from(["id", "expires_at", "args", "reply_to", "signature"]) | st.text(
        max_size=10)

    @fuzz_settings(ci=400, dev=40)
    @given(names, json_values | st.dictionaries(keys, json_values, max_size=6), st.booleans())
    def fuzz(name: str, value: Any, retained: bool) -> None:
        exchange(running, name, json.dumps(value).encode(), retained)

    fuzz()
    assert_no_door_moved_and_ping_answers(running)


def test_plausible_envelopes_are_refused_or_applied_exactly_as_the_contract_says(
    running: AgentThread,
) -> None:
    outcomes: set[str] = set()

    @fuzz_settings(ci=1400, dev=120)
    @given(envelopes())
    def fuzz(message: tuple[str, bytes, bool]) -> None:
        name, payload, retained = message
        reply = exchange(running, name, payload, retained)
        outcomes.add("ok" if reply.error is None else reply.error.code)

    fuzz()
    # the generator reaches the interesting places: applied commands and refusals of each kind
    assert {"ok", "invalid", "unknown_command"} <= outcomes and len(outcomes) >= 6, outcomes
    assert_no_door_moved_and_ping_answers(running)


# ------------------------------------------------------- known bugs, one test each


def _handle(thread: AgentThread, name: str, payload: bytes) -> Answer:
    agent = thread.agent
    assert agent is not None and agent.processor is not None
    processor = agent.processor
    return thread.call(lambda: processor.handle(name, payload))


def _envelope(**extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()),
            "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(), **extra}


@pytest.mark.parametrize("char", ["\x01", "\x1f", "\x7f", "\x85", "\ufdd0", "\uffff",
                                  "\ud800"],
                         ids=["SOH", "US", "DEL", "NEL", "U+FDD0", "U+FFFF", "surrogate"])
def test_a_reply_to_that_is_not_a_valid_mqtt_topic_is_ignored(
    running: AgentThread, char: str
) -> None:
    payload = json.dumps(_envelope(reply_to=f"lockers/{LOCKER}/x{char}y")).encode()
    answer = _handle(running, "ping", payload)
    assert answer.reply_to is None  # the reply goes to the default topic instead
    if char == "\ud800":  # a lone surrogate cannot be UTF-8: the whole payload is refused
        assert answer.reply.error is not None
        assert answer.reply.error.code == "invalid_json"
    else:
        assert answer.reply.ok


def test_a_reply_can_always_be_published(running: AgentThread) -> None:
    answer = _handle(running, "ping", b'{"id": "\\ud800", "expires_at": 1}')
    assert answer.reply.error is not None and answer.reply.error.code == "invalid_json"
    c.Reply.model_validate_json(answer.reply.model_dump_json())


def test_a_huge_number_is_invalid_json_not_internal(running: AgentThread) -> None:
    answer = _handle(running, "ping", b'{"id": ' + b"1" * 5000 + b"}")
    assert answer.reply.error is not None
    assert answer.reply.error.code == "invalid_json"


def test_a_courier_expiry_out_of_range_is_invalid_not_internal(running: AgentThread) -> None:
    payload = json.dumps(as_operator_document(LOCKER, "grant_courier", _envelope(args={
        "courier_id": "c-1", "code": "AB12cd34", "expires_at": "9999-12-31T23:00:00-05:00",
    }))).encode()
    answer = _handle(running, "grant_courier", payload)
    assert answer.reply.error is not None
    assert (answer.reply.error.code, answer.reply.error.field) == ("invalid", "args.expires_at")


# ------------------------------------------------------------------ against a broker


@pytest.fixture
def broker_agent(
    write_config: ConfigWriter, mosquitto: MosquittoBroker,  # noqa: F811
) -> Iterator[tuple[AgentThread, Cloud]]:
    key = Ed25519PrivateKey.generate()
    config = write_config(
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.2,
              "reconnect_max_s": 1.0, "operator_public_key": public_key_base64(key),
              # every message must be answered here: admission control is tested elsewhere
              "max_commands_per_s": 1000, "command_burst": 1000, "command_queue_size": 1000},
        auto_close=0.05,
    )
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as cloud, AgentThread(config) as agent:
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth message")
        yield agent, cloud


def malformed_messages(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """(command name, payload) pairs, none of them a command the locker may apply."""
    now = datetime.now(UTC)

    def when(seconds: float) -> str:
        return (now + timedelta(seconds=seconds)).isoformat()

    def junk() -> Any:
        return rng.choice([None, True, 0, -1, 1e308, "", "x" * rng.randint(1, 300), [], {},
                           [1, [2, [3]]], {"a": {"b": None}}, "\u202e\u0000"])

    valid_args = {
        "assign": {"assignment_id": "p-1", "pickup_code": "48291300", "size": "S"},
        "open": {"compartment_id": "A01", "reason": "audit", "operator": "op-1"},
        "remote_pickup": {"assignment_id": "p-1"},
        "clear_alarm": {"operator": "op-1", "reason": "checked"},
        "cancel": {"assignment_id": "p-1", "reason": "x"},
        "set_config": {"remote_open_limit": 0},
    }

    def envelope_with_a_defect(name: str) -> tuple[str, bytes]:
        document: dict[str, Any] = {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "expires_at": when(300),
            "args": dict(valid_args.get(name, {})),
        }
        defect = rng.randrange(12)
        unsigned = defect in (9, 10, 11)  # a bad signature, or none on a door opening
        if defect == 0:
            document.pop(rng.choice(["id", "expires_at"]))
        elif defect == 1:
            document["expires_at"] = when(-rng.uniform(1, 1e6))
        elif defect == 2:
            document["expires_at"] = when(HORIZON.total_seconds() + rng.uniform(60, 1e8))
        elif defect == 3:
            document["expires_at"] = rng.choice([None, 0, "", "tomorrow", [], {}])
        elif defect == 4:
            document["id"] = rng.choice([None, 42, "", "not-a-uuid", "\ud800" * 32, [], {}])
        elif defect == 5:
            document["args"] = rng.choice([None, 0, "", "x", [], [1, [2]]])
        elif defect == 6:
            document["args"]["colour"] = junk()
        elif defect == 7 and document["args"]:
            document["args"][rng.choice(sorted(document["args"]))] = rng.choice(
                [None, [], {}, [1], {"a": 1}])
        elif defect == 8:
            document["extra"] = junk()
        elif defect == 9:
            document["signature"] = rng.choice(
                ["", "!!", base64.b64encode(rng.randbytes(64)).decode(), "x" * 201])
            if name not in c.SIGNED_COMMANDS:
                document["args"]["colour"] = 1
        else:  # a door-opening command, unsigned, and the key is configured
            unsigned = True
            name = rng.choice(sorted(c.SIGNED_COMMANDS))
            document["args"] = dict(valid_args.get(name, {}))
        if defect == 7 and not document["args"]:
            document["args"] = {"colour": junk()}
        if not unsigned:  # the rest are signed: their defect is what must refuse them
            document = as_operator_document(LOCKER, name, document, seal=False)
        return name, json.dumps(document).encode()

    names = [*c.COMMAND_ARGS, "unlock_everything", "open_all", "x", "ping_"]
    messages: list[tuple[str, bytes]] = []
    for n in range(count):
        name = rng.choice(names)
        kind = n % 5
        if kind == 0:
            messages.append((name, rng.randbytes(rng.randint(0, 200))))
        elif kind == 1:
            messages.append((name, json.dumps(junk()).encode()))
        else:
            messages.append(envelope_with_a_defect(name))
    messages += [
        ("ping", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
        ("ping", b"{" * (c.MAX_PAYLOAD_BYTES + 1)),
        ("ping", b'{"id": ' + b"1" * 5000 + b"}"),
        ("open", json.dumps({"id": str(uuid.uuid4()), "expires_at": when(300),
                             "args": valid_args["open"], "signature": "AAAA"}).encode()),
    ]
    return messages


def test_hundreds_of_malformed_messages_over_mqtt_leave_the_locker_answering(
    broker_agent: tuple[AgentThread, Cloud],
) -> None:
    agent, cloud = broker_agent
    running = agent.agent
    assert running is not None and running.simulator is not None
    started = time.monotonic()
    base = f"lockers/{LOCKER}/cmd"
    messages = malformed_messages(random.Random(20240607), 300)
    infos = [cloud.client._client.publish(f"{base}/{name}", payload, qos=1)
             for name, payload in messages]
    # topics the locker must not take as commands, or must answer with wrong_topic
    odd = [(f"{base}/UPPER", b"{}"), (f"{base}/with-dash", b"{}"), (f"{base}/{'x' * 40}", b"{}"),
           (f"{base}/", b"{}"), (f"{base}/ping/extra", b"{}")]
    infos += [cloud.client._client.publish(topic, payload, qos=1) for topic, payload in odd]
    # a retained command, refused, then cleared from the broker
    retained = json.dumps({"id": str(uuid.uuid4()), "expires_at": (
        datetime.now(UTC) + timedelta(minutes=5)).isoformat()}).encode()
    infos.append(cloud.client._client.publish(f"{base}/ping", retained, qos=1, retain=True))
    for info in infos:
        info.wait_for_publish(5)
    cloud.client._client.publish(f"{base}/ping", b"", qos=1, retain=True).wait_for_publish(5)

    # every message on a single-level cmd topic is answered, except the ones whose reply
    # cannot be encoded (lone-surrogate ids: a known bug, see test_a_reply_can_always_be_published)
    lost = sum(1 for _, payload in messages if b"\\ud800" in payload)
    expected = len(messages) - lost + 4 + 1  # 4 odd single-level topics, the retained one
    cloud.wait_for(lambda: len(cloud.on("replies")) >= expected, timeout=10,
                   what=f"{expected} replies")
    reply = cloud.command("ping", timeout=5)
    assert reply["ok"], reply

    replies = [c.Reply.model_validate_json(m.payload) for m in cloud.on("replies")]
    codes: dict[str, int] = {}
    for one in replies:
        assert not one.ok or one.command == "ping", one  # only our own ping succeeded
        assert one.error is None or one.error.code in KNOWN_CODES | {"wrong_topic"}, one
        if one.error is not None:
            codes[one.error.code] = codes.get(one.error.code, 0) + 1
    assert codes.get("internal", 0) == 0
    assert codes.get("retained", 0) == 1
    assert codes.get("wrong_topic", 0) == 4
    assert {"invalid", "invalid_json", "expired", "bad_signature", "unknown_command",
            "payload_too_large"} <= set(codes), codes

    assert agent._thread.is_alive()
    assert running.simulator.pulses == []
    assert agent.call(lambda: dict(running.service.locker.intents)) == {}
    assert running.link is not None and running.link.connected
    cloud.wait_for(lambda: agent.call(running.store.outbox_depth) == 0, timeout=5,
                   what="outbox drained")
    assert time.monotonic() - started < 20


def test_a_reply_to_with_a_control_character_does_not_cut_the_locker_off(
    broker_agent: tuple[AgentThread, Cloud],
) -> None:
    _, cloud = broker_agent
    document = {"id": str(uuid.uuid4()),
                "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                "reply_to": f"lockers/{LOCKER}/answers\x01"}
    cloud.client._client.publish(f"lockers/{LOCKER}/cmd/ping", json.dumps(document),
                                 qos=1).wait_for_publish(5)
    time.sleep(1)
    assert cloud.command("ping", timeout=4)["ok"]
