"""``locker-ctl dashboard``: its options, and the handler that starts it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from locker_agent.ctl.options import EXIT_OK, UsageError, connected, signing_key

TOKEN_ENV = "LOCKER_DASHBOARD_TOKEN"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``dashboard`` subcommand to ``locker-ctl``'s subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "dashboard", help="serve a live fleet dashboard in the browser",
        description=(
            "Follow every locker's retained status and compartments and the event stream, "
            "and serve them as a live web page; operators sign in with the dashboard token "
            f"(--token-file or ${TOKEN_ENV}) and can open a compartment, take compartments "
            "or lockers out of or back into service, and sync."
        ),
    )
    parser.add_argument("--listen", default="127.0.0.1", metavar="ADDRESS",
                        help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--http-port", type=int, default=8080, metavar="PORT",
                        help="port to serve on (default 8080)")
    parser.add_argument("--token-file", type=Path, metavar="PATH",
                        help=f"file holding the sign-in token (or ${TOKEN_ENV})")
    parser.add_argument("--sign-key", type=Path, metavar="PATH",
                        help="Ed25519 private key (PEM) to sign door-opening commands with "
                             "(or $LOCKER_CTL_SIGN_KEY)")
    parser.add_argument("--https-cert", type=Path, metavar="PATH",
                        help="serve HTTPS with this certificate (PEM), with --https-key")
    parser.add_argument("--https-key", type=Path, metavar="PATH")
    parser.set_defaults(handler=run)
    return parser


def read_token(path: Path | None) -> str:
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-file {path}: {exc.strerror or exc}") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(
            f"the dashboard needs a sign-in token: --token-file PATH or ${TOKEN_ENV} "
            "(e.g. `openssl rand -base64 24`)")
    return token


def run(args: argparse.Namespace) -> int:
    from locker_agent.ctl.dashboard.auth import Sessions, WeakToken
    from locker_agent.ctl.dashboard.server import WebOptions, build, serve

    token = read_token(args.token_file)
    try:
        Sessions(token)  # refuse a weak token before connecting to anything
    except WeakToken as exc:
        raise UsageError(str(exc)) from None
    key = signing_key(args.sign_key)
    if (args.https_cert is None) != (args.https_key is None):
        raise UsageError("--https-cert and --https-key go together")
    if not 1 <= args.http_port <= 65535:
        raise UsageError(f"--http-port {args.http_port}: must be 1-65535")
    https = args.https_cert is not None
    if args.listen not in LOOPBACK and not https:
        print(f"locker-ctl: warning: serving plain HTTP on {args.listen}: the token and "
              "session cookie cross the network in clear; prefer --https-cert/--https-key",
              file=sys.stderr)
    with connected(args) as client:
        app = build(client, token=token, sign_with=key, timeout=args.timeout,
                    secure_cookie=https)
        scheme = "https" if https else "http"
        print(f"dashboard on {scheme}://{args.listen}:{args.http_port}/ "
              f"(broker {client.options.host}:{client.options.port}, "
              f"commands {'signed' if key else 'unsigned'})", file=sys.stderr, flush=True)
        serve(app, WebOptions(args.listen, args.http_port, args.https_cert, args.https_key))
    return EXIT_OK
