"""What every ``locker-ctl`` subcommand shares: exit codes, broker options, keys.

Keys are looked for in this order: the option, the environment, then a demo locker's state
directory (``$LOCKER_AGENT_STATE_DIR``, else ``./.state`` as ``make run`` makes it), where the
demo writes its operator key (``demo-operator.key``) and the locker's identity
(``identity.pub``). A production operator passes ``--sign-key`` and enrols each locker's
identity key (``locker-agent identity``) as ``$LOCKER_CTL_LOCKER_KEYS/<locker_id>.pub``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from locker_agent.contract.sealing import SealError, load_locker_key
from locker_agent.contract.signing import SigningKeyError, load_private_key
from locker_agent.ctl.client import ConnectionOptions, FleetClient

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

PASSWORD_ENV = "LOCKER_CTL_PASSWORD"
SIGN_KEY_ENV = "LOCKER_CTL_SIGN_KEY"
LOCKER_KEYS_ENV = "LOCKER_CTL_LOCKER_KEYS"
DEMO_OPERATOR_KEY = "demo-operator.key"
DEMO_IDENTITY = "identity.pub"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
DEMO_BROKER = Path("mosquitto") / "listening"
"""``host:port`` of the demo locker's own broker while it runs (cloud/local_broker.py)."""
DEFAULT_PORT, DEFAULT_TLS_PORT = 1883, 8883


class UsageError(Exception):
    """Something on the command line, or a file it names, cannot be used."""


def connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The broker options; on subcommands they default to SUPPRESS so they never override."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("broker connection")
    group.add_argument("--host", default=default("127.0.0.1"), help="broker (default 127.0.0.1)")
    group.add_argument("--port", type=port, default=default(None),
                       help=f"default: the demo locker's broker when `make run` is running "
                            f"here, else {DEFAULT_PORT}, or {DEFAULT_TLS_PORT} with TLS")
    group.add_argument("--protocol", choices=("5", "3.1.1"), default=default("5"),
                       help="MQTT version (default 5)")
    group.add_argument("--username", default=default(None))
    group.add_argument("--password", default=default(None),
                       help=f"prefer ${PASSWORD_ENV}: a command line is visible to others")
    group.add_argument("--tls", action="store_true", default=default(False),
                       help="TLS with the system's CAs (implied by the file options)")
    group.add_argument("--ca-file", type=Path, default=default(None), metavar="PATH")
    group.add_argument("--cert-file", type=Path, default=default(None), metavar="PATH",
                       help="client certificate (PEM), with --key-file")
    group.add_argument("--key-file", type=Path, default=default(None), metavar="PATH")
    group.add_argument("--prefix", default=default("lockers"),
                       help="the lockers' mqtt.topic_prefix (default lockers)")
    group.add_argument("--timeout", type=positive, default=default(10.0), metavar="S",
                       help="seconds to wait for the broker and for a reply (default 10)")


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, not {text!r}")
    return int(text)


def connection(args: argparse.Namespace) -> tuple[ConnectionOptions, str]:
    tls = bool(args.tls or args.ca_file or args.cert_file or args.key_file)
    if (args.cert_file is None) != (args.key_file is None):
        raise UsageError("--cert-file and --key-file go together")
    for option in ("ca_file", "cert_file", "key_file"):
        path: Path | None = getattr(args, option)
        if path is not None and not path.is_file():
            raise UsageError(f"--{option.replace('_', '-')} {path}: no such file")
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    if password and not args.username:
        raise UsageError(f"a password (--password or ${PASSWORD_ENV}) needs --username")
    prefix: str = args.prefix
    if not prefix or "+" in prefix or "#" in prefix or prefix.startswith("/") \
            or prefix.endswith("/"):
        raise UsageError(f"--prefix {prefix!r}: no wildcards, no leading or trailing '/'")
    host, port_number = args.host, args.port
    if port_number is None and not tls:
        demo = demo_broker() if host == "127.0.0.1" else None
        if demo is not None:
            host, port_number = demo
            print(f"locker-ctl: using the demo locker's broker {host}:{port_number}",
                  file=sys.stderr)
    options = ConnectionOptions(
        host=host,
        port=port_number or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        protocol=args.protocol,
        username=args.username,
        password=password or None,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        tls=tls,
    )
    return options, prefix


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[FleetClient]:
    options, prefix = connection(args)
    try:
        client = FleetClient(options, prefix=prefix)
    except (OSError, ValueError) as exc:  # unreadable CA or client certificate
        raise UsageError(f"cannot set up TLS: {exc}") from exc
    client.connect(timeout=args.timeout)
    try:
        yield client
    finally:
        client.close()


def demo_broker() -> tuple[str, int] | None:
    """The broker a demo locker started here (``make run``), while it runs.

    Believed only when it is the demo's own: on loopback, in a file of this user's, and with
    the broker's pid still alive; a stale or planted file must not send this user's
    credentials or signed commands anywhere else.
    """
    directory = demo_state_dir()
    if directory is None:
        return None
    path = directory / DEMO_BROKER
    try:
        if path.stat().st_uid != os.getuid():
            return None
        host, _, number = path.read_text().strip().rpartition(":")
        pid = int((path.parent / "mosquitto.pid").read_text().strip())
        os.kill(pid, 0)  # raises if no such process
    except (OSError, ValueError):
        return None
    if host not in LOOPBACK_HOSTS or not number.isdigit():
        return None
    return host, int(number)


def demo_state_dir() -> Path | None:
    """Where ``make run`` keeps a demo locker's state, if there is one here."""
    named = os.environ.get("LOCKER_AGENT_STATE_DIR")
    directory = Path(named) if named else Path(".state")
    return directory if directory.is_dir() else None


def signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    if path is None:
        from_env = os.environ.get(SIGN_KEY_ENV)
        demo = demo_state_dir()
        if from_env:
            path = Path(from_env)
        elif demo is not None and (demo / DEMO_OPERATOR_KEY).is_file():
            path = demo / DEMO_OPERATOR_KEY
            print(f"locker-ctl: signing with the demo operator key {path}", file=sys.stderr)
        else:
            return None
    try:
        return load_private_key(path)
    except FileNotFoundError:
        raise UsageError(f"signing key {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"signing key {path}: {exc.strerror or exc}") from None
    except SigningKeyError as exc:
        raise UsageError(str(exc)) from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(
            f"signing key {path}: not an unencrypted PEM private key (make one with "
            "locker-ctl keygen)"
        ) from None


def locker_key(value: str | None, locker_id: str) -> X25519PublicKey | None:
    """The identity key to seal ``locker_id``'s codes to: ``--locker-key`` (base64, or a file
    holding it or ``locker-agent identity --json``), else the enrolled one in
    ``$LOCKER_CTL_LOCKER_KEYS``, else a demo locker's here; None if there is none."""
    if value is None:
        keyring = os.environ.get(LOCKER_KEYS_ENV)
        demo = demo_state_dir()
        if keyring and (Path(keyring) / f"{locker_id}.pub").is_file():
            value = str(Path(keyring) / f"{locker_id}.pub")
        elif demo is not None and _identity_of(demo / DEMO_IDENTITY) == locker_id:
            value = str(demo / DEMO_IDENTITY)
        else:
            return None
    text = value
    if Path(value).is_file():
        try:
            text = Path(value).read_text()
        except OSError as exc:
            raise UsageError(f"locker key {value}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        if document.get("locker_id") not in (None, locker_id):
            raise UsageError(
                f"locker key {value} belongs to {document.get('locker_id')}, not {locker_id}")
        text = str(document.get("public_key", ""))
    try:
        return load_locker_key(text)
    except SealError as exc:
        raise UsageError(f"locker key {value}: {exc}") from None


def _identity_of(path: Path) -> str | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return str(document.get("locker_id")) if isinstance(document, dict) else None
