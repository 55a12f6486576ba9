"""``locker-ctl dashboard`` and ``locker-ctl dashboard-operator``: their options and handlers."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from locker_agent.ctl.options import EXIT_OK, EXIT_REFUSED, UsageError, connected, signing_key

OPERATORS_ENV = "LOCKER_DASHBOARD_OPERATORS"
OLD_TOKEN_ENV = "LOCKER_DASHBOARD_TOKEN"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
MIGRATE = (
    "the dashboard no longer has one shared token: each operator signs in with a token of "
    "their own, so the name recorded with each command is theirs. Make an operators file "
    "with `locker-ctl dashboard-operator add NAME --file PATH` (it prints NAME's token once) "
    "and start the dashboard with --operators PATH"
)


DEFAULT_HTTP_PORT = 8080
PORTS_TRIED = 20
"""With no --http-port and 8080 taken (by `make run`'s kiosk, say), the next free of 20."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``dashboard`` subcommand to ``locker-ctl``'s subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "dashboard", help="serve a live fleet dashboard in the browser",
        description=(
            "Follow every locker's retained status and compartments and the event stream, "
            "and serve them as a live web page; operators sign in with their own token "
            f"(--operators or ${OPERATORS_ENV}, made with `locker-ctl dashboard-operator "
            "add`) and can open a compartment, take compartments or lockers out of or back "
            "into service, and sync."
        ),
    )
    parser.add_argument("--listen", default="127.0.0.1", metavar="ADDRESS",
                        help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--http-port", type=int, default=None, metavar="PORT",
                        help=f"port to serve on (default {DEFAULT_HTTP_PORT}, or the first "
                             f"free one of the next {PORTS_TRIED}: `make run` may hold it)")
    parser.add_argument("--operators", type=Path, metavar="PATH",
                        help=f"the operators file (or ${OPERATORS_ENV}); read again when it "
                             "changes")
    parser.add_argument("--token-file", type=Path, help=argparse.SUPPRESS)  # gone: says so
    parser.add_argument("--sign-key", type=Path, metavar="PATH",
                        help="Ed25519 private key (PEM) to sign door-opening commands with "
                             "(or $LOCKER_CTL_SIGN_KEY)")
    parser.add_argument("--https-cert", type=Path, metavar="PATH",
                        help="serve HTTPS with this certificate (PEM), with --https-key")
    parser.add_argument("--https-key", type=Path, metavar="PATH")
    parser.set_defaults(handler=run)
    return parser


def add_operator_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``dashboard-operator add|remove|list`` to ``locker-ctl``'s subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "dashboard-operator", help="add or remove a dashboard operator",
        description=(
            "Keep the dashboard's operators file: `add` makes a token for an operator and "
            "prints it once (the file keeps only its scrypt hash), `remove` takes them out "
            "(their sessions end within a second on a running dashboard), `list` names them."
        ),
    )
    actions = parser.add_subparsers(dest="operator_action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add an operator and print their new token once")
    add.add_argument("name", metavar="NAME",
                     help="the name recorded with each command they send (1-64 letters, "
                          "digits and _.:-)")
    add.add_argument("--replace", action="store_true",
                     help="NAME is there already: give them a new token (the old one stops "
                          "working and their sessions end)")
    remove = actions.add_parser("remove", help="take an operator out")
    remove.add_argument("name", metavar="NAME")
    listing = actions.add_parser("list", help="name every operator and when they were added")
    for action in (add, remove, listing):
        action.add_argument("--file", type=Path, metavar="PATH",
                            help=f"the operators file (or ${OPERATORS_ENV})")
        action.set_defaults(handler=run_operator)
    return parser


def count(n: int, noun: str) -> str:
    """``1 operator``, ``2 operators``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def operators_path(path: Path | None, *, option: str) -> Path:
    if path is not None:
        return path
    named = os.environ.get(OPERATORS_ENV, "").strip()
    if named:
        return Path(named)
    if os.environ.get(OLD_TOKEN_ENV):
        raise UsageError(f"${OLD_TOKEN_ENV} is set, but {MIGRATE}")
    raise UsageError(f"say which operators file: {option} PATH or ${OPERATORS_ENV} (make one "
                     "with `locker-ctl dashboard-operator add NAME --file PATH`)")


def run_operator(args: argparse.Namespace) -> int:
    from locker_agent.ctl.dashboard import operators

    path = operators_path(args.file, option="--file")
    try:
        if args.operator_action == "list":
            for name, credential in sorted(operators.load(path).items()):
                print(f"{name}\tadded {credential.added_at}")
            return EXIT_OK
        if args.operator_action == "remove":
            if not operators.remove(path, args.name):
                print(f"locker-ctl: {args.name} is not an operator in {path}", file=sys.stderr)
                return EXIT_REFUSED
            print(f"removed {args.name} from {path}; a running dashboard ends their sessions "
                  "within a second", file=sys.stderr)
            return EXIT_OK
        if not operators.valid_name(args.name):
            raise UsageError(f"NAME {args.name!r}: 1-64 letters, digits and _.:-, starting "
                             "with a letter or digit")
        token = operators.add(path, args.name, replace=args.replace)
    except operators.OperatorsFileError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    print(f"{'new token for' if args.replace else 'added'} {args.name} in {path}. Their "
          "token, shown this once (the file keeps only its hash); hand it over privately:",
          file=sys.stderr, flush=True)
    print(token, flush=True)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from locker_agent.ctl.dashboard.operators import Operators, OperatorsFileError
    from locker_agent.ctl.dashboard.server import PortTaken, WebOptions, build, listen, serve

    if args.token_file is not None:
        raise UsageError(f"--token-file is gone: {MIGRATE}")
    try:  # refuse a missing or broken operators file before connecting to anything
        operators = Operators(operators_path(args.operators, option="--operators"))
    except OperatorsFileError as exc:
        raise UsageError(str(exc)) from None
    if not operators.names():
        raise UsageError(f"{operators.path} names no operator: nobody could sign in (add one "
                         "with `locker-ctl dashboard-operator add NAME --file PATH`)")
    key = signing_key(args.sign_key)
    if (args.https_cert is None) != (args.https_key is None):
        raise UsageError("--https-cert and --https-key go together")
    if args.http_port is not None and not 1 <= args.http_port <= 65535:
        raise UsageError(f"--http-port {args.http_port}: must be 1-65535")
    https = args.https_cert is not None
    if args.listen not in LOOPBACK and not https:
        print(f"locker-ctl: warning: serving plain HTTP on {args.listen}: tokens and session "
              "cookies cross the network in clear; prefer --https-cert/--https-key",
              file=sys.stderr)
    try:  # before the broker: a taken port is said at once, never as a traceback
        sock = listen(args.listen, args.http_port or DEFAULT_HTTP_PORT,
                      try_next=PORTS_TRIED if args.http_port is None else 0)
    except PortTaken as exc:
        raise UsageError(f"{exc.strerror}; choose another with --http-port") from None
    port = sock.getsockname()[1]
    with sock, connected(args) as client:
        app = build(client, operators=operators, sign_with=key, timeout=args.timeout,
                    secure_cookie=https)
        scheme = "https" if https else "http"
        print(f"dashboard on {scheme}://{args.listen}:{port}/ "
              f"(broker {client.options.host}:{client.options.port}, "
              f"commands {'signed' if key else 'unsigned'}, "
              f"{count(len(operators.names()), 'operator')})", file=sys.stderr, flush=True)
        serve(app, WebOptions(args.listen, port, args.https_cert, args.https_key), sock)
    return EXIT_OK
