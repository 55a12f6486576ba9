"""``locker-ctl``: send commands to lockers and watch them, over the same broker they use.

Exit status: 0 done (the locker answered ok), 1 the locker answered with an error, 2 a usage,
connection or key problem (nothing was done, or no answer came).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from locker_agent.contract.messages import CODE_FIELDS, COMMAND_ARGS
from locker_agent.contract.signing import public_key_base64
from locker_agent.contract.tokens import key_id, sign_courier_token, sign_pickup_token
from locker_agent.contract.topics import COMMAND_NAME_CHARS
from locker_agent.ctl.client import CtlError, Received
from locker_agent.ctl.dashboard.cli import add_operator_parser
from locker_agent.ctl.dashboard.cli import add_parser as add_dashboard_parser
from locker_agent.ctl.options import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    LOCKER_KEYS_ENV,
    SIGN_KEY_ENV,
    UsageError,
    connected,
    connection_options,
    locker_key,
    positive,
    signing_key,
)

_PARCEL_STATES = frozenset({"occupied", "expired", "return_waiting"})
"""Compartment states in which a parcel is inside."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # key=value pairs may follow options (``send L1 assign --json '{..}' size=M``), which
    # argparse leaves over once the positional list has been read
    pairs = [item for item in extra if not item.startswith("-") and "=" in item]
    if args.command == "send" and pairs:
        args.pairs = [*args.pairs, *pairs]
        extra = [item for item in extra if item not in pairs]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (UsageError, CtlError) as exc:
        _complain(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "watch" else EXIT_USAGE
    except BrokenPipeError:  # e.g. piped into head
        _silence_stdout()
        return EXIT_OK


# ------------------------------------------------------------------------------ options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locker-ctl",
        description="Send commands to parcel lockers and watch them over MQTT.",
        epilog=(
            "Exit status: 0 ok, 1 the locker refused the command, 2 usage, connection or key "
            "problem. Connection options may come before or after the subcommand."
        ),
    )
    connection_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    send = sub.add_parser(
        "send", help="send one command and print the locker's reply",
        description=(
            "Send COMMAND to LOCKER_ID and print the reply as JSON. In each key=value, "
            "the value is read as JSON when it parses (42, true, [\"a\"]), else as text; "
            "arguments the contract types as text (ids, codes, reasons) are always text."
        ),
    )
    send.add_argument("locker_id", metavar="LOCKER_ID")
    send.add_argument("name", metavar="COMMAND",
                      help="one of: " + ", ".join(sorted(COMMAND_ARGS)))
    send.add_argument("pairs", nargs="*", metavar="key=value")
    send.add_argument("--json", dest="json_args", metavar="OBJECT",
                      help="arguments as one JSON object (key=value pairs override its keys)")
    send.add_argument(
        "--sign-key", type=Path, metavar="PATH",
        help=f"Ed25519 private key (PEM) to sign the command with (or ${SIGN_KEY_ENV})",
    )
    send.add_argument(
        "--locker-key", metavar="KEY",
        help="the locker's identity key (base64, or its file) to seal codes to "
             f"(or ${LOCKER_KEYS_ENV}/LOCKER_ID.pub; `locker-agent identity` prints it)",
    )
    send.add_argument("--clear-codes", action="store_true",
                      help="send codes in clear (a bench locker with require_sealed_codes off)")
    send.add_argument("--expires-in", type=positive, default=300.0, metavar="SECONDS",
                      help="the command expires this long from now (default 300)")
    send.set_defaults(handler=_send)

    watch = sub.add_parser(
        "watch", help="print what lockers publish, one JSON line per message",
        description=(
            "Print each message on events, status, compartments and telemetry as one JSON "
            "line {topic, retained, payload} until Ctrl-C, --count or --seconds."
        ),
    )
    watch.add_argument("locker_id", nargs="?", default="+", metavar="LOCKER_ID",
                       help="one locker, or + for all (default)")
    watch.add_argument("--events-only", action="store_true", help="only the event stream")
    watch.add_argument("--count", type=_positive_int, metavar="N",
                       help="stop after N messages")
    watch.add_argument("--seconds", type=positive, metavar="S", help="stop after S seconds")
    watch.set_defaults(handler=_watch)

    fleet = sub.add_parser(
        "fleet", help="a table of every locker's presence and compartments",
        description="Collect retained status and compartment messages, then print a table.",
    )
    fleet.add_argument("--seconds", type=positive, default=2.0, metavar="S",
                       help="how long to collect retained messages (default 2)")
    fleet.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fleet.set_defaults(handler=_fleet)

    keygen = sub.add_parser(
        "keygen", help="make an operator signing key",
        description=(
            "Write a new Ed25519 private key (PEM, mode 0600) to PATH and print its public key "
            "(base64) for the locker's mqtt.operator_public_key."
        ),
    )
    keygen.add_argument("path", type=Path, metavar="PATH")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")
    keygen.set_defaults(handler=_keygen)
    _sign_token_parser(sub)
    dashboard = add_dashboard_parser(sub)
    add_operator_parser(sub)

    for subparser in (send, watch, fleet, dashboard):
        connection_options(subparser, defaults=False)
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1, not {text!r}")
    return int(text)


# --------------------------------------------------------------------------------- send


def _send(args: argparse.Namespace) -> int:
    _check_topic_level("LOCKER_ID", args.locker_id)
    name: str = args.name
    if not name or len(name) > 32 or not set(name) <= COMMAND_NAME_CHARS:
        raise UsageError(f"COMMAND {name!r}: lower-case letters and '_' only")
    command_args = command_arguments(name, args.json_args, args.pairs)
    key = signing_key(args.sign_key)
    seal_for = locker_key(args.locker_key, args.locker_id)
    if seal_for is None and not args.clear_codes and any(
        f in command_args for f in CODE_FIELDS.get(name, ())
    ):
        raise UsageError(
            f"no identity key for {args.locker_id}: its code would cross the broker in clear. "
            "Pass --locker-key (locker-agent identity prints it) or enrol it in "
            f"${LOCKER_KEYS_ENV}; --clear-codes only for a locker that accepts clear codes")
    with connected(args) as client:
        document = client.envelope(
            args.locker_id, name, command_args, sign_with=key, seal_for=seal_for,
            expires_in=timedelta(seconds=args.expires_in),
        )
        try:
            reply = client.send(args.locker_id, name, document, timeout=args.timeout)
        except CtlError as exc:
            if str(exc).startswith("no reply"):
                raise CtlError(f"{exc}: is it online? (locker-ctl fleet shows presence)") from exc
            raise
        except (RuntimeError, ValueError) as exc:  # paho could not hand the message over
            raise CtlError(f"the command could not be sent: {exc}") from exc
    print(json.dumps(reply, indent=2))
    return EXIT_OK if reply.get("ok") is True else EXIT_REFUSED


def command_arguments(
    name: str, json_text: str | None, pairs: Sequence[str]
) -> dict[str, Any]:
    """The ``args`` object from ``--json`` and ``key=value`` pairs, as ``send`` reads them."""
    arguments: dict[str, Any] = {}
    if json_text is not None:
        try:
            parsed = json.loads(json_text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--json is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise UsageError("--json must be a JSON object, e.g. '{\"size\": \"M\"}'")
        arguments.update(parsed)
    text_fields = _text_fields(name)
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"argument {pair!r}: expected key=value")
        arguments[key] = value if key in text_fields else _json_or_text(value)
    return arguments


def _text_fields(name: str) -> frozenset[str]:
    """The arguments of ``name`` whose only non-null type in the contract is a string."""
    model = COMMAND_ARGS.get(name)
    if model is None:
        return frozenset()
    text = set()
    for key, schema in model.model_json_schema().get("properties", {}).items():
        variants = schema.get("anyOf", [schema])
        types = {v.get("type") for v in variants} - {"null"}
        if types == {"string"}:
            text.add(key)
    return frozenset(text)


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _check_topic_level(what: str, value: str) -> None:
    if not value or any(ch in value for ch in "/+#\0"):
        raise UsageError(f"{what} {value!r}: one topic level, no '/', '+' or '#'")


# -------------------------------------------------------------------------------- watch


def _watch(args: argparse.Namespace) -> int:
    locker_id: str = args.locker_id
    if locker_id != "+":
        _check_topic_level("LOCKER_ID", locker_id)
    base = f"{args.prefix}/{locker_id}"
    tails = ["events"] if args.events_only else ["status", "events", "compartments/+",
                                                  "telemetry"]
    filters = [f"{base}/{tail}" for tail in tails]
    inbox: queue.Queue[Received] = queue.Queue()
    with connected(args) as client:
        client.subscribe_all(filters, inbox.put, timeout=args.timeout)
        print(f"watching {', '.join(filters)}", file=sys.stderr, flush=True)
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        printed = 0
        while args.count is None or printed < args.count:
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                message = inbox.get(timeout=wait)
            except queue.Empty:
                continue
            print(json.dumps(watch_line(message), separators=(",", ":")), flush=True)
            printed += 1
    return EXIT_OK


def watch_line(message: Received) -> dict[str, Any]:
    """What ``watch`` prints for one message: the payload as JSON if it is JSON."""
    payload: Any
    try:
        payload = message.json()
    except ValueError:
        payload = message.payload.decode("utf-8", errors="replace")
    return {"topic": message.topic, "retained": message.retain, "payload": payload}


# -------------------------------------------------------------------------------- fleet


@dataclass
class LockerView:
    """What the retained messages say about one locker."""

    locker_id: str
    status: dict[str, Any] | None = None
    compartments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def online(self) -> bool | None:
        return None if self.status is None else bool(self.status.get("online"))

    def free_by_size(self) -> dict[str, int]:
        """Free compartments by size, in the locker's size order where it told us one."""
        order = list((self.status or {}).get("free_by_size") or {})
        if not self.compartments:
            return dict((self.status or {}).get("free_by_size") or {})
        sizes = order + sorted({c.get("size", "?") for c in self.compartments.values()}
                               - set(order))
        free = dict.fromkeys(sizes, 0)
        for compartment in self.compartments.values():
            if compartment.get("state") == "free":
                free[compartment.get("size", "?")] += 1
        return free

    def count(self, states: frozenset[str]) -> int:
        return sum(1 for c in self.compartments.values() if c.get("state") in states)

    def as_dict(self) -> dict[str, Any]:
        status = self.status or {}
        return {
            "locker_id": self.locker_id,
            "online": self.online,
            "since": status.get("since"),
            "in_service": status.get("in_service"),
            "free_by_size": self.free_by_size(),
            "occupied": self.count(_PARCEL_STATES),
            "out_of_service": self.count(frozenset({"out_of_service"})),
            "compartments": len(self.compartments),
        }


def fleet_view(messages: Sequence[Received], prefix: str) -> list[LockerView]:
    """The lockers seen in retained ``status`` and ``compartments/+`` messages."""
    lockers: dict[str, LockerView] = {}
    head = prefix + "/"
    for message in messages:
        if not message.topic.startswith(head) or not message.payload:
            continue
        parts = message.topic[len(head):].split("/")
        try:
            document = message.json()
        except ValueError:
            continue
        if not isinstance(document, dict):
            continue
        view = lockers.setdefault(parts[0], LockerView(parts[0]))
        if parts[1:] == ["status"]:
            view.status = document
        elif len(parts) == 3 and parts[1] == "compartments":
            view.compartments[parts[2]] = document
    return [lockers[key] for key in sorted(lockers)]


def _fleet(args: argparse.Namespace) -> int:
    seen: list[Received] = []
    with connected(args) as client:
        client.subscribe_all(
            [f"{args.prefix}/+/status", f"{args.prefix}/+/compartments/+"], seen.append,
            timeout=args.timeout,
        )
        time.sleep(args.seconds)
        collected = list(seen)
    lockers = fleet_view(collected, args.prefix)
    if args.json:
        print(json.dumps([view.as_dict() for view in lockers], indent=2))
    elif not lockers:
        print(f"no locker has published under {args.prefix}/ on this broker", file=sys.stderr)
    else:
        print_fleet_table(lockers, sys.stdout)
    return EXIT_OK


def print_fleet_table(lockers: Sequence[LockerView], out: TextIO) -> None:
    header = ("LOCKER", "PRESENCE", "SINCE", "FREE", "OCCUPIED", "OUT OF SERVICE")
    rows = [header]
    for view in lockers:
        summary = view.as_dict()
        presence = {True: "online", False: "offline", None: "unknown"}[view.online]
        if summary["in_service"] is False:
            presence += " (out of service)"
        free = " ".join(f"{size}:{n}" for size, n in summary["free_by_size"].items()) or "-"
        rows.append((
            view.locker_id, presence, _short_time(summary["since"]), free,
            str(summary["occupied"]), str(summary["out_of_service"]),
        ))
    shown = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in shown) for i in range(len(header))]
    for row in shown:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                  .rstrip() + "\n")


def printable(text: str, limit: int = 80) -> str:
    """What a locker published, safe for a terminal: control and format characters (escape
    sequences that could rewrite the screen) shown as '?', and at most ``limit`` characters."""
    safe = "".join("?" if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def _short_time(value: object) -> str:
    if not isinstance(value, str):
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# ------------------------------------------------------------------------------- keygen


def _keygen(args: argparse.Namespace) -> int:
    path: Path = args.path
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; --force replaces it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # an existing file keeps its mode otherwise
        file.write(pem)
    public = public_key_base64(key)
    print(public)
    print(
        f"wrote the private key to {path} (keep it secret); give the lockers the public key:\n"
        f'  [security]\n  operator_public_keys = ["{public}"]',
        file=sys.stderr,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- sign-token


def _sign_token_parser(sub: Any) -> None:
    sign = sub.add_parser(
        "sign-token", help="sign a pickup or courier QR token (docs/tokens.md)",
        description=(
            "Print a token the lockers verify offline with the public key of --key (give it "
            "to them as a token key). Only the token goes to stdout; its id and expiry to "
            "stderr. Durations: a whole number and s, m, h or d (90m, 72h, 2d)."
        ),
    )
    kinds = sign.add_subparsers(dest="token_kind", metavar="KIND", required=True)
    pickup = kinds.add_parser("pickup", help="a single-use token for one assignment")
    pickup.add_argument("--locker", required=True, metavar="LOCKER_ID")
    pickup.add_argument("--assignment", required=True, metavar="ASSIGNMENT_ID")
    courier = kinds.add_parser("courier", help="a courier's token for one or more lockers")
    courier.add_argument("--courier", required=True, metavar="COURIER_ID")
    courier.add_argument("--locker", dest="lockers", action="append", required=True,
                         metavar="LOCKER_ID", help="a locker it opens (repeat for several)")
    courier.add_argument("--not-before", type=_moment, metavar="TIME",
                         help="ISO 8601 with a zone, e.g. 2025-03-14T08:00+01:00 (default now)")
    for kind in (pickup, courier):
        kind.add_argument("--key", type=Path, metavar="PATH",
                          help=f"private key from locker-ctl keygen (or ${SIGN_KEY_ENV})")
        kind.add_argument("--valid-for", type=_duration, required=True, metavar="DURATION")
        kind.set_defaults(handler=_sign_token)


def _duration(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"a duration like 90m, 72h or 2d, not {text!r}")
    try:
        return timedelta(**{units[unit]: int(number)})
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is too long") from None


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a zone (Z or +01:00)")
    return moment


def _sign_token(args: argparse.Namespace) -> int:
    key = signing_key(args.key)
    if key is None:
        raise UsageError(f"sign-token needs --key PATH (or ${SIGN_KEY_ENV})")
    start: datetime = args.not_before if getattr(args, "not_before", None) else datetime.now(UTC)
    try:
        expires_at = start + args.valid_for
        if args.token_kind == "pickup":
            token = sign_pickup_token(key, locker_id=args.locker, assignment_id=args.assignment,
                                      expires_at=expires_at)
        else:
            token = sign_courier_token(key, courier_id=args.courier, lockers=args.lockers,
                                       not_before=start, expires_at=expires_at)
    except (ValueError, OverflowError) as exc:
        raise UsageError(f"cannot sign this token: {exc}") from None
    print(token)
    print(f"{args.token_kind} token, {len(token)} characters, key {key_id(key)}, "
          f"expires {expires_at.astimezone(UTC).isoformat(timespec='seconds')}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------------- misc


def _complain(message: str) -> None:
    print(f"locker-ctl: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """After a broken pipe, let the interpreter's final flush go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
