"""`locker-agent run --demo` as a newcomer starts it: the kiosk URL and the printed codes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.conftest import BIN, REPO


@dataclass
class DemoAgent:
    process: subprocess.Popen[str]
    kiosk_url: str
    codes: list[str]
    courier_code: str | None = None

    @property
    def base_url(self) -> str:
        return self.kiosk_url.removesuffix("/kiosk/")


@contextmanager
def demo_agent(
    state_dir: Path, *, env: dict[str, str] | None = None, stderr: IO[Any] | int | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[DemoAgent]:
    """The simulated demo locker with its API on a free port and no cloud link; stopped with
    SIGTERM at the end, which it must survive with exit 0."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_AGENT_")}
    environment.update({
        "LOCKER_AGENT_STATE_DIR": str(state_dir),
        "LOCKER_AGENT_MQTT__ENABLED": "false",
        "LOCKER_AGENT_API__PORT": "0",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    })
    process = subprocess.Popen(
        [str(BIN / "locker-agent"), "run", "--config", str(REPO / "config/simulated.toml"),
         "--demo"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if stderr is None else stderr,
        stdin=subprocess.DEVNULL, env=environment, text=True, preexec_fn=preexec_fn,
    )
    try:
        assert process.stdout is not None
        codes: list[str] = []
        courier_code = None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "the agent stopped before printing the kiosk URL"
            if found := re.search(r"pickup code (\d{8,})", line):
                codes.append(found[1])
            if found := re.search(r"Courier code .*: (\d{8,})", line):
                courier_code = found[1]
            if found := re.search(r"Kiosk page: (http://\S+)", line):
                url = found[1]
        assert url is not None and codes
        yield DemoAgent(process, url, codes, courier_code)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
