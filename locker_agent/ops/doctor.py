"""``locker-agent doctor``: check a locker's setup, one line per check, with what to do.

Each line is ``PASS``, ``WARN`` or ``FAIL``, the check's name and what was found; a ``FAIL``
line ends with ``fix:`` and the remedy. Nothing is changed and no database is created: the
database is opened read-only. Exit code 0 without a FAIL, 1 with one, 2 when the config
itself does not load.

Run it as the user the service runs as (``sudo -u locker-agent locker-agent doctor``):
permissions are checked for whoever runs it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import importlib.util
import os
import shutil
import socket
import sqlite3
import ssl
import stat
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from locker_agent import __version__
from locker_agent.cloud.local_broker import INSTALL_HINT
from locker_agent.config import AgentConfig, ConfigError, load_config
from locker_agent.contract.signing import SigningKeyError, load_public_key
from locker_agent.runtime.secret import SECRET_BYTES
from locker_agent.store.migrations import CURRENT_VERSION

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2

CONNECT_TIMEOUT_S: Final = 3.0
CERT_WARN_DAYS: Final = 30

Status = Literal["PASS", "WARN", "FAIL"]


@dataclass(frozen=True)
class Finding:
    status: Status
    name: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status}  {self.name:<9} {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix else text


def run_doctor(config_path: Path, *, out: Callable[[str], None] = print) -> int:
    """Check the locker configured at ``config_path``; print the findings through ``out``."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            out(Finding("FAIL", "config", f"{exc.path}: {problem}").line())
        if not exc.path.is_file():
            out(f"fix: give the path of the locker's config file (--config; the examples are "
                f"in config/), or create {exc.path}")
        else:
            out(f"fix: correct the key(s) above, then run: locker-agent check-config {exc.path}")
        return EXIT_CONFIG
    findings = [
        Finding(
            "PASS", "config",
            f"{config_path}: locker {config.locker_id}, {len(config.compartments)} "
            f"compartment{'s' if len(config.compartments) != 1 else ''}",
        ),
        *check_config(config),
    ]
    for finding in findings:
        out(finding.line())
    counts = {s: sum(f.status == s for f in findings) for s in ("FAIL", "WARN", "PASS")}
    out(f"{counts['FAIL']} failed, {counts['WARN']} warnings, {counts['PASS']} passed")
    return EXIT_FAILURE if counts["FAIL"] else EXIT_OK


def check_config(config: AgentConfig) -> list[Finding]:
    """Every check after the config loaded, in the order they are printed."""
    findings = [check_state_dir(config)]
    database, has_codes = check_database(config)
    findings += [database, check_secret(config, has_codes), check_hardware(config)]
    findings += check_command_security(config)
    findings += check_tls_files(config)
    findings.append(check_broker(config))
    findings.append(check_api_port(config))
    return findings


def check_api_port(config: AgentConfig) -> Finding:
    """The kiosk's port must be free for the agent, or held by this locker's own agent."""
    api = config.api
    if not api.enabled:
        return Finding("PASS", "api", "api.enabled = false: the locker listens on no port")
    where = f"{api.host}:{api.port}"
    try:
        infos = socket.getaddrinfo(api.host, api.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Finding("FAIL", "api", f"api.host {api.host!r}: {exc.strerror or exc}",
                       fix="set api.host to an address of this board (127.0.0.1 for a kiosk)")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return Finding("FAIL", "api", f"cannot listen on {where}: {exc.strerror or exc}",
                               fix="set api.host and api.port to an address this user may use")
        else:
            return Finding("PASS", "api", f"{where} is free for the kiosk page and API")
    host = f"[{api.host}]" if ":" in api.host else api.host
    if _is_this_locker(f"http://{host}:{api.port}", config.locker_id):
        return Finding("PASS", "api", f"{where} is served by this locker's agent (running)")
    return Finding(
        "FAIL", "api", f"{where} is taken by another program",
        fix=f"stop it (ss -ltnp 'sport = :{api.port}' shows which), or set api.port",
    )


def _is_this_locker(url: str, locker_id: str) -> bool:
    """Whether ``url`` answers /healthz as the agent of ``locker_id``."""
    import json
    import urllib.request

    host = url.split("//", 1)[1].rsplit(":", 1)[0]
    if host in ("0.0.0.0", "[::]"):  # listening everywhere: ask it on loopback
        url = url.replace(host, "127.0.0.1" if host == "0.0.0.0" else "[::1]", 1)
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=CONNECT_TIMEOUT_S) as response:
            body = json.loads(response.read(65536))
    except urllib.error.HTTPError as exc:  # 503 while unhealthy: still an answer
        try:
            body = json.loads(exc.read(65536))
        except ValueError:
            return False
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("locker_id") == locker_id


# --- who may command the locker ------------------------------------------------------------------


def check_command_security(config: AgentConfig) -> list[Finding]:
    """Operator keys readable, unsigned commands off, the wall clock's trust stated."""
    if not config.mqtt.enabled:
        return [Finding("PASS", "commands", "the cloud link is off: no commands are taken")]
    findings: list[Finding] = []
    if config.security.allow_unsigned_commands:
        findings.append(Finding(
            "FAIL", "commands",
            "security.allow_unsigned_commands = true: anyone on the broker can command "
            "this locker",
            "set it to false and list the operator's key in security.operator_public_keys",
        ))
    keys = config.operator_public_keys
    if not keys and not config.security.allow_unsigned_commands:
        findings.append(Finding(
            "FAIL", "commands", "no operator key: the locker will not start",
            "add the public key of `locker-ctl keygen` to security.operator_public_keys",
        ))
    for index, value in enumerate(keys):
        try:
            load_public_key(value)
        except (SigningKeyError, OSError, ValueError) as exc:
            findings.append(Finding(
                "FAIL", "commands", f"security.operator_public_keys[{index}]: {exc}",
                "install the operator's public key (PEM) there, or give it as base64",
            ))
    if keys and not findings:
        sealed = "sealed codes required" if config.sealed_codes_required else \
            "codes may arrive in clear"
        findings.append(Finding(
            "PASS", "commands",
            f"{len(keys)} operator key{'s' if len(keys) != 1 else ''}; every command but "
            f"ping must be signed; {sealed}",
        ))
    if config.security.wall_clock == "trusted":
        findings.append(Finding(
            "PASS", "clock", "wall clock trusted from boot (security.wall_clock)"))
    return findings


# --- state directory, database, secret ---------------------------------------------------------


def check_state_dir(config: AgentConfig) -> Finding:
    state_dir = config.state_dir
    if not state_dir.exists():
        parent = _existing_parent(state_dir)
        if os.access(parent, os.W_OK | os.X_OK):
            detail = f"{state_dir} does not exist; first start creates it"
            return Finding("WARN", "state_dir", detail)
        return Finding(
            "FAIL", "state_dir", f"{state_dir} does not exist and {parent} is not writable",
            f"create it for the service user: install -d -m 750 -o locker-agent {state_dir}",
        )
    if not state_dir.is_dir():
        return Finding(
            "FAIL", "state_dir", f"{state_dir} is not a directory",
            "point state_dir (or LOCKER_AGENT_STATE_DIR) at a directory",
        )
    try:
        with tempfile.TemporaryFile(dir=state_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Finding(
            "FAIL", "state_dir", f"{state_dir} is not writable: {exc.strerror or exc}",
            f"chown -R locker-agent {state_dir} (or remount the file system read-write)",
        )
    return Finding("PASS", "state_dir", f"{state_dir} is writable")


def _existing_parent(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")


def check_database(config: AgentConfig) -> tuple[Finding, bool | None]:
    """The database finding, and whether it holds codes (None if unknown)."""
    path = config.database_path
    if not path.exists():
        if config.secret_path.exists():
            return Finding(
                "FAIL", "database",
                f"no database at {path}, but {config.secret_path.name} shows this locker has "
                "run before: the agent will start with every compartment out of service",
                f"restore {path.name} from a backup before starting, or start the agent and "
                "sync the locker from the cloud",
            ), False
        detail = f"no database yet at {path}; first start creates it"
        return Finding("WARN", "database", detail), False
    # A damaged file is kept aside by the agent, which starts afresh (a new secret is fine).
    damaged_fix = (
        "restore it from a backup before the next start; otherwise the agent keeps it aside "
        f"({path.name}.damaged-*) and starts with every compartment out of service until the "
        "cloud has synced the locker"
    )
    try:
        with _read_only(path) as conn:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
            stored_id = None
            has_codes = None
            if "locker" in tables:
                row = conn.execute("SELECT locker_id FROM locker WHERE id = 1").fetchone()
                stored_id = None if row is None else str(row[0])
            if "credential" in tables:
                has_codes = conn.execute("SELECT 1 FROM credential LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError as exc:
        return Finding("FAIL", "database", f"{path} is damaged: {exc}", damaged_fix), False
    except (sqlite3.Error, OSError) as exc:
        return Finding(
            "FAIL", "database", f"cannot open {path}: {exc}",
            f"run doctor as the service user; check the owner of {path.parent}",
        ), None
    if problems != ["ok"]:
        shown = "; ".join(problems[:3])
        return Finding("FAIL", "database", f"{path} is damaged: {shown}", damaged_fix), False
    if version > CURRENT_VERSION:
        return Finding(
            "FAIL", "database",
            f"{path} is at schema version {version}, newer than this locker-agent "
            f"({__version__}) understands ({CURRENT_VERSION})",
            "install a newer locker-agent or restore a backup",
        ), has_codes
    if stored_id is not None and stored_id != config.locker_id:
        return Finding(
            "FAIL", "database",
            f"{path} belongs to locker {stored_id!r}, but the config says {config.locker_id!r}",
            "point state_dir elsewhere or fix locker_id",
        ), has_codes
    if version < CURRENT_VERSION:
        return Finding(
            "WARN", "database",
            f"quick_check ok; schema version {version}, the agent migrates it to "
            f"{CURRENT_VERSION} when it starts",
        ), has_codes
    return Finding(
        "PASS", "database", f"{path}: quick_check ok, schema version {version} (current)"
    ), has_codes


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """Open ``path`` without writing it and without leaving files owned by the wrong user.

    With a ``-wal`` beside it (the agent is running, or crashed) the WAL must be read, which
    may create a ``-shm``: any file made here gets the database's owner. Without one the
    file is opened immutable, creating nothing.
    """
    siblings = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    existed = {p: p.exists() for p in siblings}
    quoted = urllib.parse.quote(str(path.absolute()))
    uri = f"file:{quoted}?mode=ro" if existed[siblings[0]] else f"file:{quoted}?immutable=1"
    conn = sqlite3.connect(uri, uri=True, timeout=CONNECT_TIMEOUT_S)
    try:
        yield conn
    finally:
        conn.close()
        owner = path.stat()
        for sibling, was_there in existed.items():
            if not was_there and sibling.exists():
                with contextlib.suppress(OSError):
                    os.chown(sibling, owner.st_uid, owner.st_gid)


def check_secret(config: AgentConfig, has_codes: bool | None) -> Finding:
    path = config.secret_path
    try:
        info = path.stat()
    except FileNotFoundError:
        if not config.database_path.exists() or has_codes is False:
            return Finding("WARN", "secret", f"{path} is absent; first start creates it")
        return Finding(
            "FAIL", "secret", f"{path} is missing but the database holds codes",
            "restore the file from backup, or move the state directory aside to start the "
            "locker afresh (and sync it from the cloud)",
        )
    except OSError as exc:
        return Finding(
            "FAIL", "secret", f"cannot see {path}: {exc.strerror or exc}",
            "run doctor as the service user",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Finding(
            "FAIL", "secret", f"{path} has mode {mode:04o}: readable by other users",
            f"chmod 600 {path}",
        )
    try:
        size = len(path.read_bytes())
    except OSError as exc:
        return Finding(
            "FAIL", "secret", f"cannot read {path}: {exc.strerror or exc}",
            f"run doctor as the service user; chown locker-agent {path}",
        )
    if size < SECRET_BYTES:
        return Finding(
            "FAIL", "secret", f"{path} holds {size} bytes; a secret needs {SECRET_BYTES}",
            "restore the file from backup",
        )
    return Finding("PASS", "secret", f"{path} present, mode {mode:04o}")


# --- hardware ------------------------------------------------------------------------------


def check_hardware(config: AgentConfig) -> Finding:
    backend = config.hardware.backend
    if backend == "simulated":
        return Finding("PASS", "hardware", "simulated locker (no real hardware)")
    if importlib.util.find_spec(f"locker_agent.hardware.{backend}") is None:
        return Finding(
            "WARN", "hardware",
            f"hardware.backend = {backend!r}: no driver in locker-agent {__version__}; "
            "the agent will not start with it",
        )
    if backend in ("rs485", "modbus"):
        port = Path(config.hardware.modbus.port if backend == "modbus"
                    else config.hardware.rs485.port)
        if not port.exists():
            return Finding(
                "FAIL", "hardware", f"serial port {port} does not exist",
                f"plug in the RS485 adapter or set hardware.{backend}.port",
            )
        if not os.access(port, os.R_OK | os.W_OK):
            return Finding(
                "FAIL", "hardware", f"serial port {port} is not readable and writable",
                "add the service user to the dialout group",
            )
        return Finding("PASS", "hardware", f"{backend} on {port}")
    chips = sorted(Path("/dev").glob("gpiochip*"))
    if not chips:
        return Finding("FAIL", "hardware", "no /dev/gpiochip*", "is this a Raspberry Pi?")
    if not any(os.access(chip, os.R_OK | os.W_OK) for chip in chips):
        return Finding(
            "FAIL", "hardware", f"{chips[0]} is not accessible",
            "add the service user to the gpio group",
        )
    return Finding("PASS", "hardware", f"gpio via {', '.join(str(c) for c in chips)}")


# --- TLS files and the broker ----------------------------------------------------------------


def check_tls_files(config: AgentConfig, *, now: datetime.datetime | None = None) -> list[Finding]:
    mqtt = config.mqtt
    if not (mqtt.enabled and mqtt.tls):
        return []
    now = now or datetime.datetime.now(datetime.UTC)
    findings: list[Finding] = []
    if mqtt.ca_file is None:
        findings.append(Finding("PASS", "tls_ca", "mqtt.ca_file unset: the system CA store"))
    else:
        findings.append(_check_ca(mqtt.ca_file, now))
    if mqtt.cert_file is not None and mqtt.key_file is not None:
        findings.append(_check_client_cert(mqtt.cert_file, mqtt.key_file, now))
    return findings


def _read(path: Path, name: str, key: str) -> bytes | Finding:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return Finding(
            "FAIL", name, f"mqtt.{key} = {str(path)!r} does not exist",
            f"install the file or correct mqtt.{key}",
        )
    except OSError as exc:
        return Finding(
            "FAIL", name, f"cannot read mqtt.{key} {path}: {exc.strerror or exc}",
            f"make it readable by the service user (chown locker-agent {path})",
        )


def _check_ca(path: Path, now: datetime.datetime) -> Finding:
    data = _read(path, "tls_ca", "ca_file")
    if isinstance(data, Finding):
        return data
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        return Finding(
            "FAIL", "tls_ca", f"{path} holds no PEM certificate: {exc}",
            "mqtt.ca_file must be the PEM file of the CA that signed the broker's certificate",
        )
    expired = [c for c in certs if c.not_valid_after_utc < now]
    if len(expired) == len(certs):
        return Finding(
            "FAIL", "tls_ca", f"{path}: CA expired on {_day(expired[0].not_valid_after_utc)}",
            "install the current CA certificate",
        )
    return Finding("PASS", "tls_ca", f"{path}: {len(certs)} CA certificate(s)")


def _check_client_cert(cert_path: Path, key_path: Path, now: datetime.datetime) -> Finding:
    data = _read(cert_path, "tls_cert", "cert_file")
    if isinstance(data, Finding):
        return data
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        return Finding(
            "FAIL", "tls_cert", f"{cert_path} is not a PEM certificate: {exc}",
            "install the locker's client certificate (PEM)",
        )
    key_data = _read(key_path, "tls_cert", "key_file")
    if isinstance(key_data, Finding):
        return key_data
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as exc:
        return Finding(
            "FAIL", "tls_cert", f"{key_path} is not an unencrypted PEM private key: {exc}",
            "install the client certificate's private key, without a passphrase",
        )
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        return Finding(
            "FAIL", "tls_cert", f"{key_path} is not the key of {cert_path}",
            "install the matching certificate and key",
        )
    subject = cert.subject.rfc4514_string()
    expires = cert.not_valid_after_utc
    if expires < now:
        return Finding(
            "FAIL", "tls_cert", f"{cert_path} ({subject}) expired on {_day(expires)}",
            "issue the locker a new client certificate",
        )
    if cert.not_valid_before_utc > now:
        return Finding(
            "FAIL", "tls_cert",
            f"{cert_path} ({subject}) is not valid before {_day(cert.not_valid_before_utc)}",
            "check the system clock (timedatectl)",
        )
    left = expires - now
    if left < datetime.timedelta(days=CERT_WARN_DAYS):
        return Finding(
            "WARN", "tls_cert",
            f"{cert_path} ({subject}) expires on {_day(expires)}, in {left.days} days; "
            "renew it",
        )
    return Finding("PASS", "tls_cert", f"{cert_path} ({subject}) valid until {_day(expires)}")


def _public_der(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    der: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _day(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def check_broker(config: AgentConfig) -> Finding:
    mqtt = config.mqtt
    if not mqtt.enabled:
        return Finding("PASS", "broker", "mqtt.enabled = false: no cloud link to check")
    if mqtt.host is None:
        binary = find_mosquitto()
        if binary is None:
            return Finding(
                "FAIL", "broker",
                "mqtt.host is unset, so the agent runs its own broker, but mosquitto is not "
                "installed", INSTALL_HINT,
            )
        return Finding("PASS", "broker", f"mqtt.host unset: the agent runs {binary} itself")
    where = f"{mqtt.host}:{mqtt.port}"
    context: ssl.SSLContext | None = None
    if mqtt.tls:
        try:
            context = ssl.create_default_context(
                cafile=str(mqtt.ca_file) if mqtt.ca_file else None
            )
            if mqtt.cert_file and mqtt.key_file:
                context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file))
        except (OSError, ssl.SSLError, ValueError) as exc:
            return Finding(
                "FAIL", "broker", f"{where} not tried: the TLS files cannot be used ({exc})",
                "fix the TLS files (see above)",
            )
    try:
        sock = socket.create_connection((mqtt.host, mqtt.port), timeout=CONNECT_TIMEOUT_S)
    except socket.gaierror as exc:
        return Finding(
            "FAIL", "broker", f"cannot resolve {mqtt.host}: {exc.strerror or exc}",
            "check mqtt.host and the locker's DNS",
        )
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return Finding(
            "FAIL", "broker", f"cannot connect to {where}: {reason}",
            "check that the broker is up, mqtt.host and mqtt.port, and the firewall/network",
        )
    with sock:
        if context is None:
            return Finding("PASS", "broker", f"{where} accepts TCP connections")
        return _tls_handshake(sock, context, mqtt.host, where)


def _tls_handshake(
    sock: socket.socket, context: ssl.SSLContext, host: str, where: str
) -> Finding:
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            # TLS 1.3 reports a refused client certificate only after the handshake.
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                tls.recv(1)
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return Finding(
            "FAIL", "broker", f"{where}: broker certificate not trusted: {exc.verify_message}",
            "mqtt.ca_file must be the CA that signed the broker's certificate, and mqtt.host "
            "a name or address that certificate carries",
        )
    except (ssl.SSLError, OSError) as exc:
        return Finding(
            "FAIL", "broker", f"{where}: TLS handshake failed: {exc}",
            "check that the port speaks TLS and the broker accepts this client certificate",
        )
    return Finding("PASS", "broker", f"{where}: TLS handshake ok ({version})")
