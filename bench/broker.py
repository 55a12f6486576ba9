"""A Mosquitto the benchmarks start on a free port, with its $SYS counters every second."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
SYS_COUNTERS = (
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/clients/connected",
    "$SYS/broker/retained messages/count",
)


def find_mosquitto() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin"):
        candidate = Path(directory, "mosquitto")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError("mosquitto not found: `make bench` installs it (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    """One Mosquitto process: no persistence, anonymous on 127.0.0.1, $SYS every second."""

    def __init__(self, workdir: Path, *, max_connections: int = -1) -> None:
        self.workdir = workdir
        self.host = HOST
        self.port = free_port()
        self.max_connections = max_connections
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Broker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "sys_interval 1\n"
            "set_tcp_nodelay true\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"max_connections {self.max_connections}\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\n"
        )
        output = (self.workdir / "mosquitto.out").open("ab")
        self._process = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)], stdout=output, stderr=output,
            stdin=subprocess.DEVNULL,
        )
        output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.workdir / 'mosquitto.out'}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def counters(self, timeout: float = 5.0) -> dict[str, float]:
        """The broker's retained $SYS counters, read by a short-lived client."""
        values: dict[str, float] = {}
        done = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sys-{time.time_ns()}")

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            with contextlib.suppress(ValueError):
                values[message.topic] = float(message.payload)
            if all(topic in values for topic in SYS_COUNTERS):
                done.set()

        client.on_message = on_message
        client.connect(HOST, self.port)
        client.subscribe([(topic, 0) for topic in SYS_COUNTERS])
        client.loop_start()
        try:
            done.wait(timeout)
        finally:
            client.disconnect()
            client.loop_stop()
        return values
