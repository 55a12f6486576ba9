"""The newcomer's path: `locker-agent run --demo` prints the kiosk URL and demo codes, and a
printed code opens a door through that URL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import BIN, REPO


def test_run_demo_prints_a_kiosk_url_where_a_printed_code_opens_a_door(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_AGENT_")}
    env.update({
        "LOCKER_AGENT_STATE_DIR": str(tmp_path / "state"),
        "LOCKER_AGENT_MQTT__ENABLED": "false",
        "LOCKER_AGENT_API__PORT": "0",
        "PYTHONUNBUFFERED": "1",
    })
    process = subprocess.Popen(
        [str(BIN / "locker-agent"), "run", "--config", str(REPO / "config/simulated.toml"),
         "--demo"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=env, text=True,
    )
    try:
        assert process.stdout is not None
        codes: list[str] = []
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "the agent stopped before printing the kiosk URL"
            if found := re.search(r"pickup code (\d{8,})", line):
                codes.append(found[1])
            if found := re.search(r"Kiosk page: (http://\S+)", line):
                url = found[1]
        assert url is not None and codes
        with httpx.Client(timeout=10) as http:
            assert http.get(url).status_code == 200
            base = url.removesuffix("/kiosk/")
            outcome = http.post(f"{base}/api/kiosk/code", json={"code": codes[0]}).json()
        assert outcome["ok"] is True, outcome
        assert "is opening" in outcome["message"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
