"""``locker-agent run`` as a real process, with a NOTIFY_SOCKET the bench listens on."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent


def agent_command() -> list[str]:
    executable = BIN / "locker-agent"
    if executable.exists():
        return [str(executable)]
    return [sys.executable, "-m", "locker_agent.cli"]


class DaemonProcess:
    """One agent process; :meth:`start` returns once it said READY=1 (or fails)."""

    def __init__(self, config_path: Path, workdir: Path) -> None:
        self.config_path = config_path
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_at: float | None = None
        self._socket: socket.socket | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def spawn(self) -> DaemonProcess:
        """Start the process without waiting (call :meth:`wait_ready` next)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        address = self.workdir / "notify.sock"
        address.unlink(missing_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(address))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_AGENT_")}
        env["NOTIFY_SOCKET"] = str(address)
        log = (self.workdir / "agent.log").open("ab")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [*agent_command(), "run", "--config", str(self.config_path), "--no-console"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from the process start to READY=1."""
        assert self._socket is not None and self.process is not None
        deadline = time.monotonic() + timeout
        while self.ready_at is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise RuntimeError(
                    f"the agent did not become ready (exit {self.process.poll()}); "
                    f"see {self.workdir / 'agent.log'}"
                )
            self._socket.settimeout(min(remaining, 0.5))
            with contextlib.suppress(TimeoutError):
                datagram = self._socket.recv(4096)
                if b"READY=1" in datagram.split(b"\n"):
                    self.ready_at = time.perf_counter()
        return self.ready_at - self.started_at

    def start(self, timeout: float = 60.0) -> DaemonProcess:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        return code

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
