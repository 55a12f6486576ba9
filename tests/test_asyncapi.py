"""docs/asyncapi.yaml and docs/mqtt-api.md against the code they describe."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from locker_agent.cloud import asyncapi
from locker_agent.config import MqttConfig, Policies
from locker_agent.contract import messages as c
from locker_agent.contract.signing import canonical_command, load_public_key, verify
from tests.conftest import REPO

DOC = REPO / "docs" / "asyncapi.yaml"
GUIDE = REPO / "docs" / "mqtt-api.md"
SOURCE = REPO / "locker_agent"

MESSAGE_MODELS: tuple[type[BaseModel], ...] = (
    c.CommandEnvelope, c.Reply, c.ErrorBody, c.EventMessage, c.StatusMessage,
    c.CompartmentMessage, c.TelemetryMessage,
)

EVENT_TYPE_PARAMETERS = frozenset({"event_type"})
"""A function with a parameter of this name makes an event of the type passed in it."""
OUTCOME_TABLE = re.compile(r'UnlockPurpose\.\w+:\s*\([^()"]*"([a-z_]+)"\s*\)')
"""``UnlockPurpose.PICKUP: (S.DEPOSITED, S.PICKED_UP, "picked_up")``: what a closing completes."""


def load_document() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    document: dict[str, Any] = json.loads(body)
    return document


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=asyncapi.REF_TEMPLATE)
    schema.pop("$defs", None)
    return schema


def emitted_event_types() -> set[str]:
    """Every event type written as a literal in locker_agent/, wherever events are made.

    Literals passed to ``DomainEvent`` (first argument or ``type=``) and to any function with
    an ``event_type`` parameter (``_event``, ``_set_status``, ``_finish``, ``_emit`` ...),
    by position or keyword; plus the table of what closing a door completes.
    """
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCE.rglob("*.py")}
    positions: dict[str, int] = {"DomainEvent": 0}
    keywords: dict[str, str] = {"DomainEvent": "type"}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                for name in EVENT_TYPE_PARAMETERS & set(names):
                    offset = 1 if names and names[0] in ("self", "cls") else 0
                    positions[node.name] = names.index(name) - offset
                    keywords[node.name] = name
    found: set[str] = set()
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called not in positions:
                continue
            candidates = [k.value for k in node.keywords if k.arg == keywords[called]]
            if len(node.args) > positions[called]:
                candidates.append(node.args[positions[called]])
            found.update(
                c.value for c in candidates
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
        found.update(OUTCOME_TABLE.findall(path.read_text(encoding="utf-8")))
    return found


def guide_sections(level: str = "####") -> dict[str, str]:
    """The text under each ``#### `name` `` heading of the guide, up to the next heading."""
    sections: dict[str, str] = {}
    parts = re.split(rf"^{level} `([a-z_]+)`\s*$", GUIDE.read_text(encoding="utf-8"),
                     flags=re.MULTILINE)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = re.split(r"^#{1,4} ", body, flags=re.MULTILINE)[0]
    return sections


def fenced_after(marker: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- signing-example: {marker} -->\s*```[a-z]*\n(.*?)\n```", text, flags=re.DOTALL
    )
    assert match, f"no signing example block {marker!r} in {GUIDE.name}"
    return match.group(1)


# ----------------------------------------------------------------------- asyncapi.yaml


def test_the_file_on_disk_is_what_the_models_say() -> None:
    assert DOC.read_text(encoding="utf-8") == asyncapi.render(asyncapi.build_asyncapi()), (
        "docs/asyncapi.yaml is out of date: run python -m locker_agent.cloud.asyncapi"
    )


def test_check_mode_passes_on_the_file_and_fails_on_drift(tmp_path: Path) -> None:
    assert asyncapi.main(["--check", str(DOC)]) == 0
    copy = tmp_path / "asyncapi.yaml"
    assert asyncapi.main([str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
    copy.write_text(copy.read_text(encoding="utf-8").replace('"ping"', '"pong"', 1))
    assert asyncapi.main(["--check", str(copy)]) == 1
    assert asyncapi.main(["--check", str(tmp_path / "missing.yaml")]) == 1


def test_it_is_json_and_therefore_yaml() -> None:
    text = DOC.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == (
        "# generated by python -m locker_agent.cloud.asyncapi — do not edit"
    )
    body_lines = [line for line in lines if not line.startswith("#")]
    body = "\n".join(body_lines)
    document = json.loads(body)
    assert document["asyncapi"] == "3.0.0"
    # what keeps a JSON text valid YAML 1.1 and 1.2 for every parser: no tabs, no control
    # characters, plain ASCII, and keys short enough to be implicit keys
    assert "\t" not in body and body.isascii()
    keys: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.extend(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert max(len(json.dumps(key)) for key in keys) < 1024
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:  # not a dependency; the checks above stand in for it
        return
    assert yaml.safe_load(text) == document


def test_every_reference_resolves() -> None:
    document = load_document()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        resolve(document, ref)


def test_every_command_has_a_channel_an_operation_and_its_arguments() -> None:
    document = load_document()
    schemas = document["components"]["schemas"]
    for name, model in c.COMMAND_ARGS.items():
        channel = document["channels"][f"cmd_{name}"]
        assert channel["address"] == "{prefix}/{locker_id}/cmd/" + name
        assert set(channel["parameters"]) == {"prefix", "locker_id"}

        operation = document["operations"][f"receive_{name}"]
        assert operation["action"] == "receive"
        assert operation["channel"] == {"$ref": f"#/channels/cmd_{name}"}
        assert operation["bindings"]["mqtt"]["qos"] == 1
        assert operation["bindings"]["mqtt"]["retain"] is False
        assert resolve(document, operation["reply"]["channel"]["$ref"])["address"].endswith(
            "/replies"
        )

        message = resolve(document, operation["messages"][0]["$ref"])
        message = resolve(document, message["$ref"])
        envelope = resolve(document, message["payload"]["$ref"])
        assert envelope["properties"]["args"] == {
            "$ref": f"#/components/schemas/{model.__name__}"
        }
        assert schemas[model.__name__] == model_schema(model)
        for key in ("id", "expires_at", "reply_to", "signature"):
            assert key in envelope["properties"]
        required = set(envelope["required"])
        assert {"id", "expires_at"} <= required
        assert ("args" in required) == bool(model_schema(model).get("required"))
    assert {k for k in document["channels"] if k.startswith("cmd_")} == {
        f"cmd_{name}" for name in c.COMMAND_ARGS
    }


def test_every_model_is_in_the_schemas_with_its_required_fields() -> None:
    schemas = load_document()["components"]["schemas"]
    for model in (*MESSAGE_MODELS, *c.COMMAND_ARGS.values()):
        schema = schemas[model.__name__]
        assert schema == model_schema(model)
        required = {n for n, info in model.model_fields.items() if info.is_required()}
        assert required <= set(schema.get("required", [])), model.__name__
        assert set(model.model_fields) == set(schema["properties"]), model.__name__


def test_the_outgoing_channels_say_qos_and_retain_as_the_link_publishes() -> None:
    document = load_document()
    expected = {
        "status": ("status", 1, True, c.StatusMessage),
        "replies": ("replies", 1, False, c.Reply),
        "events": ("events", 1, False, c.EventMessage),
        "compartments": ("compartments/{compartment_id}", 1, True, c.CompartmentMessage),
        "telemetry": ("telemetry", 0, False, c.TelemetryMessage),
    }
    sends = {
        resolve(document, op["channel"]["$ref"])["address"]: op
        for op in document["operations"].values() if op["action"] == "send"
    }
    for channel_id, (tail, qos, retain, model) in expected.items():
        channel = document["channels"][channel_id]
        assert channel["address"] == "{prefix}/{locker_id}/" + tail
        operation = sends[channel["address"]]
        assert operation["bindings"]["mqtt"]["qos"] == qos
        assert operation["bindings"]["mqtt"]["retain"] is retain
        (message,) = channel["messages"].values()
        payload = resolve(document, message["$ref"])["payload"]
        assert payload == {"$ref": f"#/components/schemas/{model.__name__}"}
    assert document["servers"]["broker"]["bindings"]["mqtt"]["keepAlive"] == (
        MqttConfig().keepalive_s
    )


def test_conflicting_sub_schemas_are_refused() -> None:
    schemas: dict[str, Any] = {"ErrorBody": {"type": "string"}}
    with pytest.raises(asyncapi.SchemaConflict, match="ErrorBody"):
        asyncapi._add_schema(schemas, c.Reply)


# ------------------------------------------------------------------------- mqtt-api.md


def test_the_guide_describes_every_command_and_each_of_its_arguments() -> None:
    sections = guide_sections()
    missing = sorted(set(c.COMMAND_ARGS) - set(sections))
    assert not missing, f"docs/mqtt-api.md has no '#### `name`' section for {missing}"
    for name, model in c.COMMAND_ARGS.items():
        for argument in model.model_fields:
            assert f"`{argument}`" in sections[name], (
                f"docs/mqtt-api.md: {name} does not describe its argument {argument}"
            )
        if name in c.SIGNED_COMMANDS:
            assert "**Signed**" in sections[name], name


def test_the_guide_lists_every_event_type_the_code_emits() -> None:
    emitted = emitted_event_types()
    # the patterns must keep finding events wherever they are made
    assert {"reserved", "cancelled", "reservation_lapsed", "picked_up", "deposited",
            "door_forced", "unlock_requested", "config_changed", "outbox_overflow"} <= emitted
    guide = GUIDE.read_text(encoding="utf-8")
    undocumented = sorted(t for t in emitted if f"`{t}`" not in guide)
    assert not undocumented, f"event types missing from docs/mqtt-api.md: {undocumented}"


def test_the_guide_names_every_error_code() -> None:
    from locker_agent.domain import errors

    codes = {
        cls.code for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.DomainError)
    }
    source = "\n".join(p.read_text(encoding="utf-8") for p in (SOURCE / "cloud").glob("*.py"))
    codes |= set(re.findall(r'CommandRefused\(\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'ErrorBody\(\s*code="([a-z_]+)"', source))
    guide = GUIDE.read_text(encoding="utf-8")
    assert {"payload_too_large", "invalid_json", "bad_signature", "retained"} <= codes
    assert not sorted(code for code in codes if f"`{code}`" not in guide)


def test_the_guide_states_the_defaults_of_the_code() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    policies, mqtt = Policies(), MqttConfig()
    assert f"default **{policies.remote_open_limit}**" in guide
    assert f"default **{policies.remote_open_window_s:g} s**" in guide
    assert f"{mqtt.command_horizon_h:g} h" in guide
    assert f"{c.MAX_PAYLOAD_BYTES} bytes" in guide
    assert f"{c.MAX_REPLAY_EVENTS}" in guide
    assert f"`mqtt.max_inflight` ({mqtt.max_inflight})" in guide
    assert f"`mqtt.max_outbox_events` ({mqtt.max_outbox_events})" in guide
    for name in sorted(c.SIGNED_COMMANDS):
        assert f"`{name}`" in guide.split("## Signing")[1].split("\n## ")[0]


def test_the_signing_example_verifies() -> None:
    envelope = json.loads(fenced_after("envelope"))
    canonical = canonical_command(
        "L-0042", "open", envelope["id"], envelope["expires_at"], envelope["args"]
    )
    assert canonical.decode() == fenced_after("canonical")
    key = load_public_key(fenced_after("public-key").strip())
    assert verify(key, canonical, envelope["signature"])
    assert c.CommandEnvelope.model_validate(envelope)
    assert c.OpenArgs.model_validate(envelope["args"])
