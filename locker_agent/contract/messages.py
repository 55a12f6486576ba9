"""The MQTT contract between a locker and the cloud, as pydantic models.

These models are the single source of truth: the agent validates every incoming command with
them, builds every outgoing message with them, and ``docs/asyncapi.yaml`` is generated from
them (``python -m locker_agent.cloud.asyncapi``); a test fails if the two drift apart.

Topics, under ``{prefix}/{locker_id}/``:

==========================  =========  ======  =========================================
topic                       direction  QoS     what
==========================  =========  ======  =========================================
``status``                  out        1, R    birth on connect; Last Will marks offline
``cmd/{name}``              in         1       a command (never retained)
``replies``                 out        1       replies, unless the command names another
``events``                  out        1       the outbox, in ``seq`` order
``compartments/{id}``       out        1, R    each compartment's current state
``telemetry``               out        0       health figures on an interval
==========================  =========  ======  =========================================
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from locker_agent.contract.sealing import SEALED_PATTERN
from locker_agent.contract.signing import KEY_ID_PATTERN

MAX_PAYLOAD_BYTES = 64 * 1024
"""Bigger command payloads are refused unread."""

CONTRACT_VERSION = 1

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Identifier = Annotated[str, StringConstraints(pattern=_ID_PATTERN)]
"""Assignment, compartment, courier and operator ids: 1-64 of letters, digits and _.:-"""

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{4,32}$")]
"""A pickup, return or courier code: 4-32 letters or digits (it is hashed on arrival)."""

CodeField = Annotated[
    str,
    StringConstraints(pattern=rf"^([A-Za-z0-9]{{4,32}}|{SEALED_PATTERN[1:-1]})$"),
    Field(description="a code sealed to the locker (sealed:..., see mqtt-api.md); in clear "
                      "(4-32 letters or digits) only on a locker that allows it"),
]
"""A code field: sealed to the locker (:mod:`locker_agent.contract.sealing`), or in clear."""

Reason = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Size = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,16}$")]


Hours = Annotated[float, Field(gt=0, le=24 * 60, description="hours, at most 60 days")]


def utc_text(moment: datetime) -> str:
    """The one form every timestamp on the wire takes: RFC 3339 in UTC, ending in ``Z`` (as
    pydantic writes the messages' datetime fields)."""
    return moment.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


def _representable_in_utc(value: datetime) -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date is out of range") from None
    if in_utc.year > 2200:
        raise ValueError("the date is out of range (after 2200)")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_representable_in_utc)]
"""A timezone-aware instant the locker can store (years up to 2200)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------- command arguments


class AssignArgs(_Strict):
    """Reserve a compartment for a delivery and register its pickup code."""

    assignment_id: Identifier
    pickup_code: CodeField
    size: Size | None = Field(default=None, description="wanted size; or give compartment_id")
    compartment_id: Identifier | None = None
    accessible: bool = False
    barcode: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    customer_ref: Identifier | None = Field(
        default=None,
        description="who the parcel is for: parcels given the same customer_ref may share a "
        "compartment and a code; none: this parcel shares with nothing",
    )
    hold_period_h: Hours | None = Field(default=None, description="default: the locker's policy")
    hold_compartment: bool = Field(
        default=True,
        description="false: hold no compartment now; the smallest free one that fits opens "
        "when the courier brings the parcel",
    )


class CancelArgs(_Strict):
    assignment_id: Identifier
    reason: Reason


class ExtendArgs(_Strict):
    assignment_id: Identifier
    hours: Hours


class AnnounceReturnArgs(_Strict):
    assignment_id: Identifier
    size: Size
    return_code: CodeField
    customer_ref: Identifier | None = None
    valid_h: Hours | None = Field(default=None, description="default: reservation TTL policy")


class GrantCourierArgs(_Strict):
    courier_id: Identifier
    code: CodeField
    expires_at: Instant | None = None


class RevokeCourierArgs(_Strict):
    courier_id: Identifier


class RevokeCodeArgs(_Strict):
    assignment_id: Identifier


class RemotePickupArgs(_Strict):
    """The customer pressed "open" in the app: open that parcel's compartment only."""

    assignment_id: Identifier


class OpenArgs(_Strict):
    """An operator opens exactly one compartment, with a reason (recorded)."""

    compartment_id: Identifier
    reason: Reason
    operator: Identifier


class SetServiceArgs(_Strict):
    """Put one compartment (or with no compartment_id the whole locker) out of or into service."""

    in_service: bool
    compartment_id: Identifier | None = None
    reason: Reason | None = None


class EmptyArgs(_Strict):
    pass


class ReplayEventsArgs(_Strict):
    """Send events from ``from_seq`` (through ``to_seq``) again, e.g. after a broker lost some.

    Events keep their seq and id; they come after whatever was already in flight.
    """

    from_seq: Annotated[int, Field(ge=1)]
    to_seq: Annotated[int, Field(ge=1)] | None = None


MAX_REPLAY_EVENTS = 50_000


class ClearAlarmArgs(_Strict):
    """Lift the remote-open lockout after a burst of remote openings was investigated."""

    operator: Identifier
    reason: Reason


class SetConfigArgs(_Strict):
    """Runtime policies; omitted keys keep their value. Kept across restarts."""

    hold_period_h: Hours | None = None
    reservation_ttl_h: Hours | None = None
    remote_open_limit: Annotated[int, Field(ge=0, le=100)] | None = None
    remote_open_window_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    telemetry_interval_s: Annotated[float, Field(ge=10, le=86400)] | None = None


COMMAND_ARGS: dict[str, type[_Strict]] = {
    "assign": AssignArgs,
    "cancel": CancelArgs,
    "extend": ExtendArgs,
    "announce_return": AnnounceReturnArgs,
    "grant_courier": GrantCourierArgs,
    "revoke_courier": RevokeCourierArgs,
    "revoke_code": RevokeCodeArgs,
    "remote_pickup": RemotePickupArgs,
    "open": OpenArgs,
    "set_service": SetServiceArgs,
    "sync": EmptyArgs,
    "ping": EmptyArgs,
    "set_config": SetConfigArgs,
    "clear_alarm": ClearAlarmArgs,
    "replay_events": ReplayEventsArgs,
}
"""Every command a locker understands, by the name in its topic ``cmd/{name}``."""

DOOR_OPENING_COMMANDS = frozenset({"open", "remote_pickup"})
UNSIGNED_COMMANDS = frozenset({"ping"})
"""The only command a locker answers without a signature: it changes and reveals nothing."""
SIGNED_COMMANDS = frozenset(COMMAND_ARGS) - UNSIGNED_COMMANDS
"""Every command that changes state or reveals anything about a parcel or a code: each must
carry a valid Ed25519 signature by an operator key the locker holds."""

CODE_FIELDS: dict[str, tuple[str, ...]] = {
    "assign": ("pickup_code",),
    "announce_return": ("return_code",),
    "grant_courier": ("code",),
}
"""The arguments that carry a code, by command: sealed to the locker on the wire."""


# ---------------------------------------------------------------------- envelopes


class CommandEnvelope(_Strict):
    """What arrives on ``cmd/{name}``."""

    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F-]{32,36}$")] = Field(
        description="a UUID; a command id is applied at most once"
    )
    expires_at: Instant = Field(description="refused with `expired` after this instant")
    args: dict[str, Any] = Field(default_factory=dict)
    reply_to: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="reply topic for MQTT 3.1.1 clients (MQTT 5: response topic)"
    )
    signature: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None,
        description="base64 Ed25519 signature over the canonical command (see mqtt-api.md)",
    )
    key_id: Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)] | None = Field(
        default=None,
        description="the id of the operator key that signed (16 hex digits, see mqtt-api.md)",
    )


class ErrorBody(_Strict):
    code: str
    message: str
    field: str | None = None


class Reply(_Strict):
    """What the locker answers to a command."""

    id: str | None = Field(description="the command id, or null if it could not be read")
    ok: bool
    command: str | None = None
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


class EventMessage(_Strict):
    """One event from the outbox, on ``events``. ``seq`` grows by one per event per locker."""

    seq: int
    id: str = Field(description="UUID; a re-sent event carries the same id")
    type: str
    at: datetime
    locker_id: str
    compartment_id: str | None = None
    assignment_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class StatusMessage(_Strict):
    """Retained on ``status``: a birth message on connect, or the Last Will."""

    online: bool
    locker_id: str
    version: str | None = None
    boot_id: str | None = None
    contract: int = CONTRACT_VERSION
    since: datetime | None = None
    in_service: bool | None = None
    free_by_size: dict[str, int] | None = None


class CompartmentMessage(_Strict):
    """Retained on ``compartments/{id}``: the compartment as it is now."""

    id: str
    label: str
    size: str
    accessible: bool
    state: Literal[
        "free", "reserved", "occupied", "return_waiting", "expired", "out_of_service"
    ]
    door: Literal["open", "closed", "unknown"]
    assignment_ids: list[str]
    out_of_service_reason: str | None = None
    updated_at: datetime
    row: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="where the door is on the locker's front: 1 = the top row; left out when "
        "the locker's config does not say",
    )
    column: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="where the door is on the locker's front: 1 = the leftmost column; left "
        "out when the locker's config does not say",
    )


class TelemetryMessage(_Strict):
    at: datetime
    uptime_s: float
    outbox_depth: int
    free_by_size: dict[str, int]
    errors: dict[str, int]
    mqtt_reconnects: int
    loop_lag_ms: float = Field(
        default=0.0, description="the worst event-loop lag over the last minute, in ms")


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("args", "size")`` → ``args.size``; list indices in brackets."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


TOPIC_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
