"""The Mosquitto the agent starts for itself when ``mqtt.host`` is unset.

So ``make run`` gives the simulated locker a real MQTT link on a laptop, with nothing to set
up but ``apt-get install mosquitto``: the broker listens on 127.0.0.1 only (anonymous access is
safe there), and keeps its config, log and persistence database in ``STATE_DIR/mosquitto/``.

The port: 1884-1899, the first one free, else any free port. Not 1883: a system Mosquitto
usually holds it, and the agent must never talk to (or fight over) a broker it does not own.
A port from the fixed range stays the same run after run, so ``mosquitto_sub -p 1884 -t '#'``
keeps working, and a :class:`LocalBroker` keeps its port across its own restarts.

If the broker dies while the agent runs, ``start()`` brings it back on the same port with its
saved state; the daemon does that, waiting on :meth:`LocalBroker.wait`. The broker runs in its
own session, so Ctrl-C reaches the agent only and the agent stops the broker after its last
words on MQTT. If the agent dies without stopping it (SIGKILL, a crash), the kernel sends the
broker SIGTERM (``setpriv --pdeathsig``, util-linux, when installed), and the next ``start()``
from the same state directory also stops any broker left behind (known by its pid file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import NoReturn

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install it with: sudo apt-get install mosquitto, or set mqtt.host, or mqtt.enabled = false"
)
PREFERRED_PORTS = range(1884, 1900)
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
AUTOSAVE_INTERVAL_S = 5
"""How often the broker saves its state: a crash loses at most this much (about 2x in 2.0)."""
LOG_ROTATE_BYTES = 1_000_000
_PORT_ATTEMPTS = 3
ADDRESS_FILE = "listening"


class LocalBrokerError(Exception):
    """The local broker cannot start; the message says why and what to do."""


class _PortTaken(LocalBrokerError):
    pass


class LocalBroker:
    """A Mosquitto child process on 127.0.0.1 for this agent alone."""

    host: str = "127.0.0.1"

    def __init__(self, state_dir: Path, *, port: int = 0, binary: str | None = None) -> None:
        """``port`` 0 picks one (see the module docstring); ``binary`` overrides the lookup."""
        self.directory = (state_dir / "mosquitto").absolute()
        self.port = port
        """The listening port; with ``port=0``, known once :meth:`start` has returned."""
        self._fixed_port = port != 0
        self._binary = binary
        self._process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def conf_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def _output_path(self) -> Path:
        """The broker's stdout/stderr: errors from before its log file is open."""
        return self.directory / "mosquitto.out"

    @property
    def address_path(self) -> Path:
        """``host:port`` while the broker runs (ADDRESS_FILE in the broker's directory)."""
        return self.directory / ADDRESS_FILE

    @property
    def _pid_path(self) -> Path:
        return self.directory / "mosquitto.pid"

    async def start(self) -> None:
        """Start the broker and return once it accepts connections; no-op if it runs."""
        if self.running:
            return
        binary = self._find_binary()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise LocalBrokerError(
                f"cannot create {self.directory} for the local MQTT broker: {exc.strerror}"
            ) from exc
        await self._stop_left_behind()
        self._rotate_log()
        attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
        for attempt in range(attempts):
            port = self.port if self.port else _pick_port()
            try:
                await self._spawn(binary, port)
            except _PortTaken:
                if attempt == attempts - 1:
                    raise
                self.port = 0  # lost a race for the port to another process: pick again
                continue
            self.port = port
            break
        # where locker-ctl, run beside the demo, finds this broker without being told
        self.address_path.write_text(f"{self.host}:{self.port}\n")
        logger.info(
            "local MQTT broker listening",
            extra={
                "fields": {
                    "host": self.host,
                    "port": self.port,
                    "pid": self._process.pid if self._process else None,
                    "dir": str(self.directory),
                }
            },
        )

    async def stop(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after 5 s); it saves its state first. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                logger.warning(
                    "local MQTT broker ignored SIGTERM, killing it",
                    extra={"fields": {"pid": process.pid, "timeout_s": STOP_TIMEOUT_S}},
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._forget_pid(process.pid)
        self.address_path.unlink(missing_ok=True)
        logger.info(
            "local MQTT broker stopped",
            extra={"fields": {"port": self.port, "returncode": process.returncode}},
        )

    async def wait(self) -> int | None:
        """Return when the broker process exits, with its exit status (None if not started)."""
        process = self._process
        if process is None:
            return None
        return await process.wait()

    def _find_binary(self) -> str:
        if self._binary is not None:
            found = shutil.which(self._binary)
            if found is None:
                raise LocalBrokerError(
                    f"the MQTT broker {self._binary} is not an executable file; {INSTALL_HINT}"
                )
            return found
        found = shutil.which("mosquitto")
        if found is None:
            # Debian puts the broker in /usr/sbin, often not on a normal user's PATH.
            found = shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        if found is None:
            raise LocalBrokerError(
                f"mqtt.host is not set, so the agent starts its own MQTT broker, but mosquitto "
                f"is not installed; {INSTALL_HINT}"
            )
        return found

    def _config_text(self, port: int) -> str:
        lines = ["# Written by locker-agent on every start of its local broker; edits are lost."]
        if os.geteuid() == 0:
            # As root Mosquitto switches to the "mosquitto" user, who may not be able to write
            # the state directory; "user root" keeps it as the agent's user.
            lines.append("user root")
        lines += [
            f"listener {port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.directory}/",
            f"autosave_interval {AUTOSAVE_INTERVAL_S}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "set_tcp_nodelay true",
        ]
        return "\n".join(lines) + "\n"

    async def _spawn(self, binary: str, port: int) -> None:
        self.conf_path.write_text(self._config_text(port))
        log_start = _size(self.log_path)
        try:
            with self._output_path.open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    *_die_with_parent(),
                    binary,
                    "-c",
                    str(self.conf_path),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise LocalBrokerError(f"cannot run {binary}: {exc.strerror}; {INSTALL_HINT}") from exc
        self._process = process
        self._pid_path.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.returncode is not None:
                self._process = None
                self._forget_pid(process.pid)
                self._fail(port, f"exited with status {process.returncode}", log_start)
            # "running" is logged once the listener is bound; a TCP accept alone could come
            # from another process holding the port while this broker is failing.
            if _logged_running(_read_from(self.log_path, log_start)) and await _accepts(
                self.host, port
            ):
                return
            if time.monotonic() > deadline:
                await self.stop()
                self._fail(port, f"not accepting after {START_TIMEOUT_S:g} s", log_start)
            await asyncio.sleep(0.02)

    def _fail(self, port: int, what: str, log_start: int) -> NoReturn:
        log = _read_from(self.log_path, log_start) + _read_from(self._output_path, 0)
        tail = "\n".join(log.strip().splitlines()[-15:])
        message = (
            f"the local MQTT broker (mosquitto on {self.host}:{port}) {what}; "
            f"its log ({self.log_path}) ends:\n{tail}"
        )
        if "Address already in use" in log:
            raise _PortTaken(message)
        raise LocalBrokerError(message)

    async def _stop_left_behind(self) -> None:
        """Stop a broker that a killed agent left running on this state directory."""
        try:
            pid = int(self._pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        if not _is_our_broker(pid, self.conf_path):
            self._pid_path.unlink(missing_ok=True)
            return
        logger.warning(
            "stopping a local MQTT broker left running by a previous agent",
            extra={"fields": {"pid": pid, "dir": str(self.directory)}},
        )
        for sig, patience in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + patience
            while _alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if not _alive(pid):
                self._pid_path.unlink(missing_ok=True)
                return
        raise LocalBrokerError(f"cannot stop the previous local MQTT broker (pid {pid})")

    def _forget_pid(self, pid: int) -> None:
        """Remove the pid file if it still names ``pid`` (a newer broker may have replaced it)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(self._pid_path.read_text().strip()) == pid:
                self._pid_path.unlink()

    def _rotate_log(self) -> None:
        """Keep one previous log: enough to see why the last broker died, and bounded."""
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_name("mosquitto.log.1"))


def _die_with_parent() -> list[str]:
    """A prefix making the kernel send SIGTERM to the broker when this process dies.

    Strictly, when the thread that started it ends: the event loop's thread, which lives as
    long as the agent. SIGTERM, not SIGKILL, so the broker still saves its state.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _pick_port() -> int:
    for port in PREFERRED_PORTS:
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LocalBroker.host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _bindable(port: int) -> bool:
    """Whether Mosquitto could listen there: it sets SO_REUSEADDR too, so TIME_WAIT is fine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LocalBroker.host, port))
            sock.listen()
        except OSError:
            return False
        return True


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _logged_running(log: str) -> bool:
    """Whether the log has Mosquitto's "mosquitto version X running" line."""
    for line in log.splitlines():
        text = line.partition(": ")[2]
        if text.startswith("mosquitto version") and text.endswith(" running"):
            return True
    return False


def _is_our_broker(pid: int, conf_path: Path) -> bool:
    """Whether ``pid`` is a live mosquitto started with this conf (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _alive(pid) and os.fsencode(conf_path) in argv


def _alive(pid: int) -> bool:
    """Running and not a zombie (a zombie is dead, just not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
