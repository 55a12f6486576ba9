"""Commands from the cloud: authenticated, validated, policed, applied at most once, answered.

:meth:`CommandProcessor.handle` takes the raw bytes of a message on ``cmd/{name}`` and returns
the :class:`Reply` to send; it never raises for anything a sender can put in a message. Every
command but ``ping`` must be signed by an operator key the locker holds, and code fields must be
sealed to the locker (:mod:`.command_guard`); nothing is written for a command that fails
either. A command id is applied at most once: the inbox row with the reply is committed in the
same transaction as the change it made, and a redelivered id gets its original reply again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from locker_agent import __version__
from locker_agent.app.ports.storage import InboxRecord
from locker_agent.app.report import assignment_rows
from locker_agent.app.service import LockerService
from locker_agent.cloud.command_guard import CodeSealing, CommandRefused, OperatorKeys
from locker_agent.cloud.policies import LooseningRefused, RuntimePolicies
from locker_agent.contract import messages as c
from locker_agent.contract.topics import Topics
from locker_agent.domain.errors import DomainError, RemoteOpenRefused
from locker_agent.domain.model import AssignmentStatus, DomainEvent
from locker_agent.domain.remote_open import RemoteOpenLimiter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """The reply to send, and where the command asked for it (None: the default topic)."""

    reply: c.Reply
    reply_to: str | None = None


@dataclass(frozen=True)
class Vigilance:
    """Limits on what even a correctly signed sender may do quickly: a stolen key, a bug.

    ``release_limit`` parcels already inside may be cancelled (which lets a courier take them
    out) per ``release_window_s``; beyond that a cancel is held back with an alarm. Codes that
    collide with a live code are accepted without a word (the reply would be an oracle) but
    not registered; ``collision_alarm_after`` of them within ``collision_window_s`` raise an
    alarm.
    """

    release_limit: int = 3
    release_window_s: float = 3600.0
    collision_alarm_after: int = 3
    collision_window_s: float = 3600.0


class CommandProcessor:
    def __init__(
        self,
        service: LockerService,
        *,
        policies: RuntimePolicies,
        keys: OperatorKeys,
        sealing: CodeSealing,
        vigilance: Vigilance = Vigilance(),
        clock_trusted: Callable[[], bool] = lambda: True,
        horizon: timedelta = timedelta(days=7),
        monotonic: Callable[[], float] = time.monotonic,
        boot_id: str = "",
        compartment_view: Callable[[str], dict[str, Any]] | None = None,
        topics: Topics | None = None,
    ) -> None:
        self.service = service
        self._topics = topics or Topics("lockers", service.locker.locker_id)
        self.policies = policies
        self.keys = keys
        self.sealing = sealing
        self._clock_trusted = clock_trusted
        self._releases = RemoteOpenLimiter(vigilance.release_limit, vigilance.release_window_s)
        self._collisions = RemoteOpenLimiter(
            vigilance.collision_alarm_after, vigilance.collision_window_s
        )
        self._collision_alarm_at: float | None = None
        self._horizon = horizon
        self._monotonic = monotonic
        self._started = monotonic()
        self._boot_id = boot_id
        self._compartment_view = compartment_view
        self._limiter = RemoteOpenLimiter(policies.remote_open_limit, policies.remote_open_window_s)
        self.refused = 0
        self.on_policies_changed: list[Callable[[RuntimePolicies], None]] = []
        self.on_replay: list[Callable[[int], None]] = []

    @property
    def locker_id(self) -> str:
        return self.service.locker.locker_id

    # ---------------------------------------------------------------- entry point

    def handle(self, name: str, payload: bytes, *, retained: bool = False) -> Answer:
        """Turn one message on ``cmd/{name}`` into its reply; never raises for bad input.

        ``reply_to`` is kept only when it is a documented reply topic
        (:meth:`~locker_agent.contract.topics.Topics.is_reply_topic`): a command must never
        make the locker publish onto another locker's topics or its own commands.
        """
        raw: dict[str, Any] = {}
        reply = self._reply(name, payload, retained, raw)
        reply_to = raw.get("reply_to")
        if not isinstance(reply_to, str) or not self._topics.is_reply_topic(reply_to):
            reply_to = None
        return Answer(reply, reply_to)

    def _reply(
        self, name: str, payload: bytes, retained: bool, raw_out: dict[str, Any]
    ) -> c.Reply:
        command_id: str | None = None
        try:
            raw = self._parse(payload)
            raw_out.update(raw)
            command_id = raw.get("id") if isinstance(raw.get("id"), str) else None
            if retained:
                earlier = self._earlier_reply(name, command_id) if command_id else None
                if earlier is not None:  # applied when it arrived live (MQTT 3.1.1)
                    return earlier
                raise CommandRefused(
                    "retained", "commands must not be retained; it was not applied", "retain"
                )
            envelope = _validate(c.CommandEnvelope, raw, prefix="")
            command_id = envelope.id
            # before the expiry check: a redelivery of an applied command gets its answer
            # even after it expired, so the cloud never mistakes it for "not applied"
            earlier = self._earlier_reply(name, envelope.id)
            if earlier is not None:
                logger.info(
                    "duplicate command answered from the inbox",
                    extra={"fields": {"command": name, "command_id": envelope.id}},
                )
                return earlier
            # before anything is written: a forged or unsigned command leaves no trace
            self.keys.check(self.locker_id, name, raw)
            try:
                self._check_expiry(name, envelope)
            except CommandRefused as refusal:
                # authentic, so remembered: this id can never be applied later, by a replay
                # of the same message once the clock is set or the expiry comes in range
                return self._refuse_and_remember(envelope, name, refusal)
            return self._apply(name, envelope, raw)
        except CommandRefused as refusal:
            self.refused += 1
            logger.warning(
                "command refused",
                extra={"fields": {"command": name, "command_id": command_id,
                                  "code": refusal.code, "field": refusal.field}},
            )
            return self._error(command_id, name, refusal.code, refusal.message, refusal.field)
        except Exception:  # a bug must cost one reply, never the link
            logger.exception("command failed", extra={"fields": {"command": name}})
            return self._error(command_id, name, "internal", "the locker could not do that")

    def _earlier_reply(self, name: str, command_id: str) -> c.Reply | None:
        earlier = self.service.store.inbox_reply(command_id)
        if earlier is None:
            return None
        reply = c.Reply.model_validate(earlier)
        if reply.command is not None and reply.command != name:
            raise CommandRefused(
                "duplicate_id",
                f"command id {command_id} was already used for {reply.command}", "id",
            )
        return reply

    def set_policies(self, policies: RuntimePolicies) -> None:
        """Policies from a reloaded config (the cloud's set_config overrides stay on top)."""
        self.policies = policies
        self._limiter.limit = policies.remote_open_limit
        self._limiter.window_s = policies.remote_open_window_s
        for listener in self.on_policies_changed:
            try:
                listener(policies)
            except Exception:  # the change is committed: its reply stands
                logger.exception("a policies listener failed")

    # -------------------------------------------------------------------- parsing

    @staticmethod
    def _parse(payload: bytes) -> dict[str, Any]:
        """The JSON object in ``payload``; a key given twice is refused, so no reader of the
        same bytes (a broker plugin, an audit tool) can see other arguments than the locker."""
        if len(payload) > c.MAX_PAYLOAD_BYTES:
            raise CommandRefused(
                "payload_too_large",
                f"the payload is {len(payload)} bytes; the limit is {c.MAX_PAYLOAD_BYTES}",
            )
        try:
            raw = json.loads(payload, object_pairs_hook=_unique_keys)
            # a lone surrogate (e.g. "\\ud800") parses but can never be sent back as UTF-8
            json.dumps(raw, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError) as exc:  # incl. JSON and UTF-8 errors, huge ints
            raise CommandRefused("invalid_json", f"the payload is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise CommandRefused("invalid_json", "the payload must be a JSON object")
        return raw

    def _check_expiry(self, name: str, envelope: c.CommandEnvelope) -> None:
        if name not in c.UNSIGNED_COMMANDS and not self._clock_trusted():
            raise CommandRefused(
                "clock_not_synchronised",
                "the locker's clock is not synchronised yet, so it cannot tell whether the "
                "command has expired; send it again in a minute",
                "expires_at",
            )
        now = self.service.now()
        horizon = DOOR_HORIZON if name in c.DOOR_OPENING_COMMANDS else self._horizon
        if envelope.expires_at <= now:
            raise CommandRefused(
                "expired", f"the command expired at {c.utc_text(envelope.expires_at)}",
                "expires_at",
            )
        if envelope.expires_at > now + horizon:
            raise CommandRefused(
                "invalid",
                f"expires_at may be at most {horizon} ahead of the locker's clock"
                + (" for a command that opens a door" if horizon is DOOR_HORIZON else ""),
                "expires_at",
            )

    def _apply(self, name: str, envelope: c.CommandEnvelope, raw: dict[str, Any]) -> c.Reply:
        model = c.COMMAND_ARGS.get(name)
        if model is None:
            refusal = CommandRefused(
                "unknown_command", f"unknown command {name!r}; known: "
                + ", ".join(sorted(c.COMMAND_ARGS)), "command",
            )
            return self._refuse_and_remember(envelope, name, refusal)
        try:
            args = self.sealing.open(name, _validate(model, envelope.args, prefix="args."))
        except CommandRefused as refusal:
            return self._refuse_and_remember(envelope, name, refusal)
        handler: Callable[[Any, Callable[[dict[str, Any]], InboxRecordFactory]], dict[str, Any]]
        handler = getattr(self, f"_cmd_{name}")
        received = self.service.now()

        def remember(result: dict[str, Any]) -> InboxRecordFactory:
            reply = c.Reply(id=envelope.id, ok=True, command=name, result=result)
            return lambda _events: InboxRecord(
                envelope.id, name, received, reply.model_dump(mode="json")
            )

        collisions = self.service.locker.code_collisions
        try:
            result = handler(args, remember)
        except CommandRefused as refusal:
            return self._refuse_and_remember(envelope, name, refusal)
        except DomainError as exc:
            field = f"args.{_ARG_FOR_DOMAIN_FIELD.get(exc.field, exc.field)}" if exc.field else None
            return self._refuse_and_remember(
                envelope, name, CommandRefused(exc.code, exc.message, field)
            )
        logger.info(
            "command applied", extra={"fields": {"command": name, "command_id": envelope.id}}
        )
        if self.service.locker.code_collisions > collisions:
            try:
                self._code_collided()
            except Exception:  # the change is committed: its reply stands
                logger.exception("could not raise the code collision alarm")
        return c.Reply(id=envelope.id, ok=True, command=name, result=result)

    def _code_collided(self) -> None:
        """A new code matched a live one: said to nobody, alarmed when it keeps happening.

        Codes are random and the cloud knows every code it gave this locker, so a collision
        is almost always someone guessing; the alarm says how many, never which.
        """
        now = self._monotonic()
        self._collisions.record(now)
        collisions = self._collisions.recent(now)
        logger.warning("a new code collided with a live code; it was not registered")
        window = self._collisions.window_s
        last = self._collision_alarm_at
        if collisions >= self._collisions.limit and (last is None or now - last >= window):
            self._collision_alarm_at = now
            event = DomainEvent("code_collision_alarm", self.service.now(), data={
                "collisions": collisions, "window_s": window,
            })
            self.service.apply(lambda: [event])

    def _refuse_and_remember(
        self, envelope: c.CommandEnvelope, name: str, refusal: CommandRefused
    ) -> c.Reply:
        reply = self._error(envelope.id, name, refusal.code, refusal.message, refusal.field)
        self.refused += 1
        logger.warning(
            "command refused",
            extra={"fields": {"command": name, "command_id": envelope.id,
                              "code": refusal.code, "field": refusal.field}},
        )
        if name not in c.UNSIGNED_COMMANDS:  # anyone may send those: they write nothing
            self.service.store.record_command(
                InboxRecord(envelope.id, name, self.service.now(), reply.model_dump(mode="json"))
            )
        return reply

    @staticmethod
    def _error(
        command_id: str | None, name: str | None, code: str, message: str,
        field: str | None = None,
    ) -> c.Reply:
        return c.Reply(
            id=command_id, ok=False, command=name,
            error=c.ErrorBody(code=code, message=message, field=field),
        )

    # ------------------------------------------------------------------ commands

    def _commit(
        self,
        transition: Callable[[], list[DomainEvent]],
        result_of: Callable[[list[DomainEvent]], dict[str, Any]],
        remember: Callable[[dict[str, Any]], InboxRecordFactory],
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run ``transition`` inside the service's apply, so a failure anywhere in it (not only
        a refusal) leaves memory rebuilt from the file; the reply is read from the state it
        left, and remembered in the same transaction."""
        result: dict[str, Any] = {}

        def record(events: Sequence[DomainEvent]) -> InboxRecord:
            result.update(result_of(list(events)))
            return remember(result)(events)

        self.service.apply(transition, inbox=record, **kwargs)
        return result

    def _cmd_assign(self, a: c.AssignArgs, remember: Remember) -> dict[str, Any]:
        locker, now = self.service.locker, self.service.now()
        hold_h = a.hold_period_h or self.policies.hold_period_h

        def result(_: list[DomainEvent]) -> dict[str, Any]:
            compartment = locker.assignments[a.assignment_id].compartment_id
            return {
                "assignment_id": a.assignment_id,
                "compartment_id": compartment,
                "label": self.service.label(compartment) if compartment else None,
                "size": locker.compartments[compartment].size if compartment else a.size,
            }

        return self._commit(partial(
            locker.reserve,
            a.assignment_id, pickup_code=a.pickup_code, now=now, hold_seconds=hold_h * 3600,
            reservation_ttl_s=self.policies.reservation_ttl_h * 3600, size=a.size,
            compartment_id=a.compartment_id, accessible=a.accessible,
            customer_ref=a.customer_ref, barcode=a.barcode, hold_compartment=a.hold_compartment,
        ), result, remember)

    def _cmd_cancel(self, a: c.CancelArgs, remember: Remember) -> dict[str, Any]:
        locker = self.service.locker
        parcel = locker.assignments.get(a.assignment_id)
        releases = parcel is not None and parcel.status is AssignmentStatus.DEPOSITED
        if releases:
            self._police_release(a.assignment_id)

        def result(_: list[DomainEvent]) -> dict[str, Any]:
            status = locker.assignments.get(a.assignment_id)
            return {
                "assignment_id": a.assignment_id,
                "status": status.status.value if status else AssignmentStatus.CANCELLED.value,
            }

        answer = self._commit(partial(
            locker.cancel, a.assignment_id, reason=a.reason, now=self.service.now()
        ), result, remember)
        if releases:
            self._releases.record(self._monotonic())
        return answer

    def _police_release(self, assignment_id: str) -> None:
        """Hold back a cancel of a parcel already inside once too many came too fast.

        A cancelled parcel inside waits for a courier to take it out; many of them in a short
        time is how a broker attacker with a signing key would empty a locker.
        """
        if not self._releases.would_exceed(self._monotonic()):
            return
        limit, window = self._releases.limit, self._releases.window_s
        event = DomainEvent("release_held_back", self.service.now(), assignment_id=assignment_id,
                            data={"limit": limit, "window_s": window})
        self.service.apply(lambda: [event])
        raise CommandRefused(
            "held_back",
            f"more than {limit} parcels already inside were cancelled within {window:g} s; "
            "this one is held back and an alarm raised: try again later or cancel it at the "
            "locker",
            "args.assignment_id",
        )

    def _cmd_extend(self, a: c.ExtendArgs, remember: Remember) -> dict[str, Any]:
        locker = self.service.locker

        def result(_: list[DomainEvent]) -> dict[str, Any]:
            assignment = locker.assignments[a.assignment_id]
            remaining = (
                locker.clock.remaining(assignment.hold_deadline)
                if assignment.hold_deadline is not None else assignment.hold_seconds
            )
            return {"assignment_id": a.assignment_id, "hold_remaining_s": round(remaining)}

        return self._commit(partial(
            locker.extend, a.assignment_id, seconds=a.hours * 3600, now=self.service.now()
        ), result, remember)

    def _cmd_announce_return(self, a: c.AnnounceReturnArgs, remember: Remember) -> dict[str, Any]:
        valid_h = a.valid_h or self.policies.reservation_ttl_h
        return self._commit(partial(
            self.service.locker.announce_return,
            a.assignment_id, size=a.size, return_code=a.return_code, now=self.service.now(),
            ttl_s=valid_h * 3600, customer_ref=a.customer_ref,
        ), lambda _: {"assignment_id": a.assignment_id}, remember)

    def _cmd_grant_courier(self, a: c.GrantCourierArgs, remember: Remember) -> dict[str, Any]:
        return self._commit(partial(
            self.service.locker.grant_courier,
            a.courier_id, code=a.code, expires_at=a.expires_at, now=self.service.now(),
        ), lambda _: {"courier_id": a.courier_id}, remember)

    def _cmd_revoke_courier(self, a: c.RevokeCourierArgs, remember: Remember) -> dict[str, Any]:
        return self._commit(partial(
            self.service.locker.revoke_courier, a.courier_id, now=self.service.now()
        ), lambda _: {"courier_id": a.courier_id}, remember)

    def _cmd_revoke_code(self, a: c.RevokeCodeArgs, remember: Remember) -> dict[str, Any]:
        return self._commit(partial(
            self.service.locker.revoke_codes, a.assignment_id, now=self.service.now()
        ), lambda _: {"assignment_id": a.assignment_id}, remember)

    def _cmd_remote_pickup(self, a: c.RemotePickupArgs, remember: Remember) -> dict[str, Any]:
        self._police_remote_open(remember)

        def result(events: list[DomainEvent]) -> dict[str, Any]:
            compartment = events[0].compartment_id or ""
            return {"compartment_id": compartment, "label": self.service.label(compartment)}

        answer = self._commit(partial(
            self.service.locker.begin_remote_pickup,
            a.assignment_id, actor="customer_app", now=self.service.now(),
        ), result, remember)
        self._limiter.record(self._monotonic())  # only openings that really happen count
        return answer

    def _cmd_open(self, a: c.OpenArgs, remember: Remember) -> dict[str, Any]:
        self._police_remote_open(remember)
        answer = self._commit(partial(
            self.service.locker.begin_operator_open,
            a.compartment_id, actor=f"operator:{a.operator}", reason=a.reason,
            now=self.service.now(), remote=True,
        ), lambda _: {"compartment_id": a.compartment_id,
                      "label": self.service.label(a.compartment_id)}, remember)
        self._limiter.record(self._monotonic())
        return answer

    def _police_remote_open(self, remember: Remember) -> None:
        """Refuse a remote opening over the limit, and raise the alarm that locks them all."""
        locker = self.service.locker
        if locker.remote_open_lockout is not None:
            return  # the domain refuses it with the reason
        if self._limiter.would_exceed(self._monotonic()):
            limit = self._limiter.limit
            window = self._limiter.window_s
            reason = f"more than {limit} remote openings within {window:g} s"
            refusal = RemoteOpenRefused(
                f"remote opening refused: {reason}; an operator must clear the alarm"
            )
            self.service.apply(partial(
                locker.trip_remote_open_alarm, reason=reason, now=self.service.now()
            ))
            raise refusal

    def _cmd_set_service(self, a: c.SetServiceArgs, remember: Remember) -> dict[str, Any]:
        locker, now = self.service.locker, self.service.now()
        transition = (
            partial(locker.set_locker_service, in_service=a.in_service, reason=a.reason, now=now)
            if a.compartment_id is None else
            partial(locker.set_compartment_service, a.compartment_id, in_service=a.in_service,
                    reason=a.reason, now=now)
        )
        return self._commit(
            transition,
            lambda _: {"compartment_id": a.compartment_id, "in_service": a.in_service},
            remember,
        )

    def _cmd_clear_alarm(self, a: c.ClearAlarmArgs, remember: Remember) -> dict[str, Any]:
        answer = self._commit(partial(
            self.service.locker.clear_remote_open_alarm,
            operator=a.operator, reason=a.reason, now=self.service.now(),
        ), lambda _: {"cleared": True}, remember)
        self._limiter.reset()
        return answer

    def _cmd_set_config(self, a: c.SetConfigArgs, remember: Remember) -> dict[str, Any]:
        changes = a.model_dump(exclude_none=True)
        try:
            updated = self.policies.with_changes(changes)
        except LooseningRefused as exc:
            raise CommandRefused("loosening_refused", str(exc), f"args.{exc.field}") from None
        overrides = {**self.service.store.policy_overrides(), **changes}
        now = self.service.now()
        event = DomainEvent("config_changed", now, data={"changes": changes})
        result = self._commit(lambda: [event], lambda _: {"policies": updated.as_dict()},
                              remember, policy_overrides=overrides)
        self.set_policies(updated)
        return result

    def _cmd_replay_events(self, a: c.ReplayEventsArgs, remember: Remember) -> dict[str, Any]:
        store = self.service.store
        last = store.last_seq()
        to_seq = min(a.to_seq or last, last)
        if a.from_seq > to_seq:
            raise CommandRefused(
                "invalid", f"from_seq {a.from_seq} is after the last event ({last})",
                "args.from_seq",
            )
        if to_seq - a.from_seq + 1 > c.MAX_REPLAY_EVENTS:
            raise CommandRefused(
                "invalid", f"at most {c.MAX_REPLAY_EVENTS} events per replay", "args.to_seq"
            )
        count, oldest = store.unpublish(a.from_seq, to_seq)
        if oldest is not None and a.from_seq < oldest:
            logger.warning("replay asked for events no longer kept",
                           extra={"fields": {"from_seq": a.from_seq, "oldest": oldest}})
        result = {"from_seq": a.from_seq, "to_seq": to_seq, "count": count,
                  "oldest_kept_seq": oldest}
        store.record_command(remember(result)([]))
        for listener in self.on_replay:
            listener(a.from_seq)
        return result

    def _cmd_ping(self, a: c.EmptyArgs, remember: Remember) -> dict[str, Any]:
        result = {
            "pong": True,
            "version": __version__,
            "boot_id": self._boot_id,
            "uptime_s": round(self._monotonic() - self._started, 3),
            "time": c.utc_text(self.service.now()),
        }
        # not remembered: anyone may send a ping, and it must cost the locker no disk write
        return result

    def _cmd_sync(self, a: c.EmptyArgs, remember: Remember) -> dict[str, Any]:
        locker = self.service.locker
        view = self._compartment_view or (lambda cid: {"id": cid})
        result = {
            "locker_id": locker.locker_id,
            "in_service": locker.in_service,
            "out_of_service_reason": locker.out_of_service_reason,
            "remote_open_lockout": locker.remote_open_lockout,
            "free_by_size": locker.free_by_size(),
            "compartments": [view(cid) for cid in locker.compartments],
            "assignments": assignment_rows(locker),
            "policies": self.policies.as_dict(),
            "last_seq": self.service.store.last_seq(),
            "outbox_depth": self.service.store.outbox_depth(),
            "at": c.utc_text(self.service.now()),
        }
        self.service.store.record_command(remember(result)([]))
        return result


DOOR_HORIZON = timedelta(minutes=15)
"""A door-opening command (open, remote_pickup) is meant for now: it may expire at most this
far ahead, so a copy captured on the broker cannot open a door days later."""

_ARG_FOR_DOMAIN_FIELD = {
    "hold_period": "hold_period_h",
    "seconds": "hours",
    "ttl": "valid_h",
}
"""Domain argument names that differ from the command arguments they come from."""

def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key[:40]!r} is given twice")
        document[key] = value
    return document


InboxRecordFactory = Callable[[Sequence[DomainEvent]], InboxRecord]
Remember = Callable[[dict[str, Any]], InboxRecordFactory]


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], raw: object, *, prefix: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = prefix + c.field_path(tuple(first["loc"])) if first["loc"] else prefix.rstrip(".")
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "missing":
            message = "required field is missing"
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise CommandRefused("invalid", f"{field or 'payload'}: {message}{suffix}",
                             field or None) from None
