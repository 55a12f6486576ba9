"""A real Mosquitto broker that a test starts, stops, kills and restarts.

Each broker lives in its own directory (config, log, persistence database) and listens on
127.0.0.1 only, on a free port that it keeps across restarts, so a client configured once
reconnects to the same address after an outage.

What survives what, with ``persistence=True``: Mosquitto keeps sessions, subscriptions,
retained messages and the QoS 1/2 messages queued for offline persistent sessions in memory
and writes them to ``mosquitto.db`` on a clean shutdown (:meth:`MosquittoBroker.stop`,
SIGTERM), on SIGUSR1 (:meth:`MosquittoBroker.save`) and on autosave. ``autosave_interval 1``
saves every 2 s in practice (2.0.11 saves once ``last + interval < now`` in whole seconds).
:meth:`MosquittoBroker.kill` is a crash: the broker comes back with its last save, so what
changed in the last ~2 s before a SIGKILL (a new session, a message queued for it) may be lost.
A test that needs state to survive a crash calls :meth:`~MosquittoBroker.save` (or, to model
the real timing, :meth:`~MosquittoBroker.wait_for_autosave`) before ``kill()``.

Mosquitto 2.0.11 only writes a session whose latest CONNECT had clean start = 0 (MQTT 3.1.1:
clean session false). An MQTT 5 session made with clean start = 1 and a session expiry interval
lives on across reconnects but is dropped by any restart, even a clean one, until the client
has once reconnected with clean start = 0.

The fixtures ``mosquitto`` and ``mosquitto_factory`` are meant to be imported into
``tests/conftest.py``. A missing ``mosquitto`` fails the test, it never skips it: the cloud
link is not tested at all without a real broker.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest

from tests.support.tls import TlsFiles

HOST = "127.0.0.1"
INSTALL_HINT = "run `apt-get install mosquitto` (CI installs it)"

SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
"""Looked in after PATH: /usr/sbin, where Debian puts the broker, is often not on PATH."""

_LIVE: set[subprocess.Popen[bytes]] = set()
"""Every broker process not yet reaped; whatever is left at interpreter exit is killed."""


@atexit.register
def _kill_survivors() -> None:
    for process in list(_LIVE):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout=5)
        _LIVE.discard(process)


def find_program(name: str) -> str:
    """Locate a Mosquitto program on PATH or in the Debian locations; fail the test if absent."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SEARCH_DIRS:
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    _fail(f"{name} not found: {INSTALL_HINT}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def password_file(path: Path, users: dict[str, str]) -> Path:
    """Write a Mosquitto password file for ``users`` (name -> password) with mosquitto_passwd."""
    program = find_program("mosquitto_passwd")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    for name, password in users.items():
        result = subprocess.run(
            [program, "-b", str(path), name, password],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"mosquitto_passwd failed for user {name!r}: {result.stderr or result.stdout}"
            )
    return path


class BrokerError(RuntimeError):
    """The broker did not start; the message carries its log."""


class _PortTaken(BrokerError):
    pass


class MosquittoBroker:
    """One Mosquitto process, configured by keyword, restartable on the same port."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        password_file: Path | None = None,
        persistence: bool = True,
    ) -> None:
        if require_certificate and tls is None:
            raise ValueError("require_certificate needs tls")
        self.workdir = workdir
        self.host = HOST
        self.port = port if port is not None else free_port()
        self.tls = tls
        self.require_certificate = require_certificate
        self.password_file = password_file
        self.persistence = persistence
        self._port_given = port is not None
        self._started_once = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def output_path(self) -> Path:
        """What the broker prints to stdout/stderr: errors from before its log file opens."""
        return self.workdir / "mosquitto.out"

    @property
    def db_path(self) -> Path:
        return self.workdir / "mosquitto.db"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    def config_text(self) -> str:
        lines = []
        if os.geteuid() == 0:
            # As root Mosquitto switches to the "mosquitto" user, who cannot read tmp_path.
            lines.append("user root")
        lines += [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "set_tcp_nodelay true",
            # Default 1000 per client: a long offline spell in a test would silently drop
            # messages. max_inflight_messages keeps its default 20; in 2.0 that is also the
            # Receive Maximum announced to MQTT 5 clients, a limit real brokers have too.
            "max_queued_messages 100000",
        ]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        if self.password_file is not None:
            lines += [f"password_file {self.password_file}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        lines.append(f"listener {self.port} {self.host}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
            ]
            if self.require_certificate:
                lines += ["require_certificate true", "use_identity_as_username true"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10) -> None:
        """Start the broker and return once it accepts TCP connections."""
        if self.running:
            raise BrokerError(f"broker on port {self.port} is already running")
        find_program("mosquitto")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The port is kept once used; before that, a port lost to a race is replaced.
        attempts = 1 if self._port_given or self._started_once else 3
        for attempt in range(attempts):
            try:
                self._spawn(timeout)
            except _PortTaken:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()
            else:
                self._started_once = True
                return

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM): Mosquitto saves its database first."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Crash the broker (SIGKILL): state since the last autosave is lost."""
        self._end(signal.SIGKILL)

    def restart(self, timeout: float = 10) -> None:
        """Stop if running (a killed broker is fine too), then start on the same port."""
        self.stop()
        self.start(timeout)

    def save(self, timeout: float = 5) -> None:
        """Make the broker write its database now (SIGUSR1) and wait until it has."""
        self._wait_for_save(timeout, lambda: self._signal(signal.SIGUSR1))

    def wait_for_autosave(self, timeout: float = 5) -> None:
        """Wait for the broker's next periodic save (up to ~2 s)."""
        self._wait_for_save(timeout, lambda: None)

    def log_text(self) -> str:
        """Everything the broker wrote: its log file, then its stdout/stderr."""
        parts = [_read(self.log_path)]
        output = _read(self.output_path)
        if output.strip():
            parts.append(f"--- stdout/stderr ---\n{output}")
        return "\n".join(parts)

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<MosquittoBroker {self.host}:{self.port} {state} in {self.workdir}>"

    def _spawn(self, timeout: float) -> None:
        self.conf_path.write_text(self.config_text())
        log_start = _size(self.log_path)
        with self.output_path.open("ab") as output:
            process = subprocess.Popen(
                [find_program("mosquitto"), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _LIVE.add(process)
        self._process = process
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                _LIVE.discard(process)
                self._process = None
                self._raise_start_failure(f"exited with status {process.returncode}", log_start)
            # "running" is logged once every listener is bound: a TCP accept alone could come
            # from another process holding the port while this broker is still failing.
            if _logged_running(_read(self.log_path)[log_start:]) and _accepts(self.host, self.port):
                return
            if time.monotonic() > deadline:
                self._end(signal.SIGKILL)
                self._raise_start_failure(f"not accepting after {timeout} s", log_start)
            time.sleep(0.01)

    def _raise_start_failure(self, what: str, log_start: int) -> NoReturn:
        log = _read(self.log_path)[log_start:]
        output = _read(self.output_path)
        message = (
            f"mosquitto on {self.host}:{self.port} {what}\n"
            f"--- {self.log_path} ---\n{log}--- stdout/stderr ---\n{output}"
        )
        if "Address already in use" in log + output:
            raise _PortTaken(message)
        raise BrokerError(message)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        _LIVE.discard(process)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or not self.running:
            raise BrokerError(f"broker on port {self.port} is not running")
        self._process.send_signal(sig)

    def _wait_for_save(self, timeout: float, trigger: Callable[[], None]) -> None:
        if not self.persistence:
            raise BrokerError("persistence is off: the broker never saves")
        # The save starts after this call, so it holds every change acknowledged before it.
        before = self._db_stamp()
        trigger()
        deadline = time.monotonic() + timeout
        while self._db_stamp() == before:
            if time.monotonic() > deadline or not self.running:
                raise BrokerError(f"no database save within {timeout} s\n{self.log_text()}")
            time.sleep(0.01)

    def _db_stamp(self) -> tuple[int, int] | None:
        """Identity of the saved file: Mosquitto writes a new file and renames it over the old."""
        try:
            stat = self.db_path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _logged_running(log: str) -> bool:
    return any(
        line.startswith("mosquitto version") and line.endswith(" running")
        for line in (entry.partition(": ")[2] for entry in log.splitlines())
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _size(path: Path) -> int:
    try:
        return len(path.read_text(errors="replace"))
    except FileNotFoundError:
        return 0


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


BrokerFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running broker with persistence, anonymous, plain TCP; stopped after the test."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Build brokers with options (see :class:`MosquittoBroker`); ``start=False`` to start later.

    Each broker gets its own directory under tmp_path; all are stopped after the test.
    """
    brokers: list[MosquittoBroker] = []

    def build(*, start: bool = True, **options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    try:
        yield build
    finally:
        for broker in brokers:
            broker.stop()
