"""A private RabbitMQ node with its MQTT plugin, that a test starts, stops, kills and restarts.

The node is the test's own: its own node name, Erlang port mapper (epmd) port, AMQP,
distribution and MQTT ports (all free ports on 127.0.0.1, kept across restarts), and its own
config, enabled-plugins file, database and logs in a work directory. A RabbitMQ the machine
may already run (on 5672/1883/25672, with the system epmd on 4369) is neither touched nor
used.

MQTT on RabbitMQ 3.10 is 3.1.1 only. Clients connect anonymously as ``guest`` (allowed from
the loopback interface only). Durable state lives in the node's Mnesia directory, so a
persistent session (clean session false) and the QoS 1 messages queued for it survive a
restart; retained messages are kept in the node's DETS store.

What RabbitMQ 3.10 does differently from Mosquitto, and the tests must allow for:
retained messages are delivered to a new subscription only when its filter names the topic
exactly (no wildcards), and QoS 2 is downgraded to QoS 1.

A missing ``rabbitmq-server`` fails the test, it never skips it (CI installs it:
``scripts/ensure-system-packages.sh rabbitmq-server``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.mosquitto import HOST, free_port

SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
"""The script itself: /usr/sbin/rabbitmq-server is a wrapper that switches to the system user."""

INSTALL_HINT = "run `scripts/ensure-system-packages.sh rabbitmq-server` (CI installs it)"
READY_LINE = "Server startup complete"

_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_survivors() -> None:
    for process in list(_LIVE):
        _kill_group(process)
        _LIVE.discard(process)


class RabbitError(RuntimeError):
    """The node did not start; the message carries its output."""


class RabbitMQBroker:
    """One RabbitMQ node with ``rabbitmq_mqtt`` enabled, restartable on the same ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.host = HOST
        self.port = free_port()
        """The MQTT listener."""
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node_name = f"lockertest-{self.port}@localhost"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def output_path(self) -> Path:
        return self.workdir / "rabbitmq.out"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config_text(self) -> str:
        return "\n".join([
            f"listeners.tcp.default = {self.host}:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = {self.host}:{self.port}",
            "mqtt.allow_anonymous = true",
            "mqtt.vhost = /",
            "mqtt.exchange = amq.topic",
            "loopback_users.guest = true",
            "log.console = true",
            "log.console.level = info",
            "log.file = false",
        ]) + "\n"

    def environment(self) -> dict[str, str]:
        work = str(self.workdir)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": work,  # the Erlang cookie is created here, not in the real home
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_CONFIG_FILE": f"{work}/rabbitmq.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{work}/enabled_plugins",
            "RABBITMQ_MNESIA_BASE": f"{work}/mnesia",
            "RABBITMQ_LOG_BASE": f"{work}/log",
            "RABBITMQ_PID_FILE": f"{work}/rabbitmq.pid",
            "RABBITMQ_CONF_ENV_FILE": f"{work}/rabbitmq-env.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{work}/advanced.config",
        })
        return env

    def start(self, timeout: float = 90) -> None:
        """Start the node and return once it has logged that startup is complete."""
        if self.running:
            raise RabbitError(f"node {self.node_name} is already running")
        if not SERVER_SCRIPT.is_file():
            _fail(f"{SERVER_SCRIPT} not found: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "rabbitmq.conf").write_text(self.config_text())
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        (self.workdir / "advanced.config").write_text("[].\n")
        log_start = _size(self.output_path)
        with self.output_path.open("ab") as output:
            process = subprocess.Popen(
                [str(SERVER_SCRIPT)], stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, env=self.environment(), cwd=self.workdir,
                start_new_session=True,  # its own process group, to kill as a whole
            )
        _LIVE.add(process)
        self._process = process
        deadline = time.monotonic() + timeout
        while READY_LINE not in _read(self.output_path)[log_start:]:
            if process.poll() is not None:
                self._reap()
                raise RabbitError(self._failure(f"exited with status {process.returncode}",
                                                log_start))
            if time.monotonic() > deadline:
                self.kill()
                raise RabbitError(self._failure(f"not ready after {timeout} s", log_start))
            time.sleep(0.1)

    def stop(self) -> None:
        """Shut the node down cleanly (SIGTERM: the start script runs a graceful stop)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        _kill_group(process)  # anything the VM left behind (erl_child_setup, inet_gethost)
        self._reap()

    def kill(self) -> None:
        """Crash the node: SIGKILL to the VM and everything it started."""
        if self._process is not None:
            _kill_group(self._process)
        self._reap()

    def restart(self, timeout: float = 90) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the node and its private epmd (which outlives the VM as a daemon)."""
        self.stop()
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                           capture_output=True, timeout=10, check=False,
                           env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)})

    def log_text(self) -> str:
        return _read(self.output_path)

    def __enter__(self) -> RabbitMQBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RabbitMQBroker {self.node_name} mqtt {self.host}:{self.port} {state}>"

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _LIVE.discard(process)

    def _failure(self, what: str, log_start: int) -> str:
        output = _read(self.output_path)[log_start:]
        return (f"rabbitmq node {self.node_name} {what}\n"
                f"--- {self.output_path} ---\n{output[-8000:]}")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _size(path: Path) -> int:
    return len(_read(path))


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


@pytest.fixture
def rabbitmq(tmp_path: Path) -> Iterator[RabbitMQBroker]:
    """A running private RabbitMQ node with MQTT on a free port; stopped after the test."""
    with RabbitMQBroker(tmp_path / "rabbitmq") as broker:
        yield broker
