"""A real agent for cloud-link tests: in a thread with its own event loop, or as a process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from locker_agent.config import load_config
from locker_agent.ctl.client import ConnectionOptions, FleetClient, Received
from locker_agent.runtime.daemon import Agent, build_agent
from tests.conftest import BIN
from tests.support.operator import as_operator

T = TypeVar("T")


class AgentThread:
    """The agent, built by the composition root, running on an event loop in a thread."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.agent: Agent | None = None

    def start(self) -> AgentThread:
        self._thread.start()
        self.agent = self.run(self._build_and_start())
        return self

    async def _build_and_start(self) -> Agent:
        agent = build_agent(load_config(self.config_path))
        await agent.start()
        return agent

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the agent's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[[], T], timeout: float = 10) -> T:
        """Run ``function`` on the agent's loop (where its state may be touched)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return future.result(timeout)

    def stop(self) -> None:
        if self.agent is not None:
            self.run(self.agent.stop())
            self.agent = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> AgentThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class AgentProcess:
    """``locker-agent run`` as a real process, to kill with SIGKILL."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_AGENT_")}
        executable = BIN / "locker-agent"
        command = [str(executable)] if executable.exists() else [
            sys.executable, "-m", "locker_agent.cli"
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*command, "run", "--config", str(self.config_path), "--no-console"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Cloud:
    """The cloud's side: a FleetClient that also records everything a locker publishes."""

    def __init__(self, host: str, port: int, locker_id: str, *, protocol: str = "5",
                 **options: Any) -> None:
        self.locker_id = locker_id
        options.setdefault("session_expiry_s", 3600)  # miss nothing across broker restarts
        self.client = as_operator(FleetClient(
            ConnectionOptions(host=host, port=port, protocol=protocol, **options)
        ))
        self.messages: list[Received] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Cloud:
        self.client.connect()
        self.client.subscribe(f"lockers/{self.locker_id}/#", self._record)
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def _record(self, message: Received) -> None:
        with self._lock:
            self.messages.append(message)

    def on(self, suffix: str) -> list[Received]:
        topic = f"lockers/{self.locker_id}/{suffix}"
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("events")]

    def unique_events(self) -> list[dict[str, Any]]:
        """Events deduplicated by id, first copy kept, as a consumer would."""
        seen: set[str] = set()
        unique = []
        for event in self.events():
            if event["id"] not in seen:
                seen.add(event["id"])
                unique.append(event)
        return unique

    def command(self, name: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.client.command(self.locker_id, name, args, **kw)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10,
                 what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)
