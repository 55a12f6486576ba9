"""The docs' examples, run as written against live agents (issue 17): a doc whose example
breaks fails here.

- docs/mqtt-api.md's ``locker-ctl`` session (keygen, enrolment, every ``send``, ``watch`` and
  ``fleet``), against a locker ``L-0042`` on a real Mosquitto;
- the README's commands for the demo (``locker-ctl`` against ``make run``'s broker and state,
  ``locker-agent status``), from a checkout-like directory with a running demo.

Only what names a real site is swapped: ``broker.example.com`` becomes the test's broker, and
``~`` a temporary home.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.harness import AgentProcess
from tests.conftest import BIN, REPO
from tests.support.demo_agent import demo_agent
from tests.support.mosquitto import MosquittoBroker, mosquitto  # noqa: F401 - fixture

GUIDE = REPO / "docs" / "mqtt-api.md"
README = REPO / "README.md"
SIZES = ["S", "M", "S", "L", "XL", "M", "S", "S"]


def console_commands(markdown: str, program: str) -> list[list[str]]:
    """Each ``$ program ...`` line of the console blocks (continuations joined), as argv."""
    commands = []
    for block in re.findall(r"```console\n(.*?)```", markdown, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.startswith("$ "):
                argv = shlex.split(line[2:], comments=True)
                if argv[0] == program or argv[:1] == ["export"]:
                    commands.append(argv)
    return commands


def l0042_config(path: Path, state: Path, broker: MosquittoBroker, operator_pub: str) -> Path:
    lines = [
        'locker_id = "L-0042"', f'state_dir = "{state}"', "log_format = \"keyvalue\"",
        "[hardware]", 'backend = "simulated"', "[hardware.simulated]", "auto_close_after_s = 0.3",
        "console = false",
        "[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}",
        "[policies]", "lock_pulse_ms = 50", "unlock_gap_ms = 0",
        "[security]", f'operator_public_keys = ["{operator_pub}"]', 'wall_clock = "trusted"',
    ]
    for number, size in enumerate(SIZES, start=1):
        lines += ["[[compartments]]", f'id = "A{number:02d}"', f'size = "{size}"',
                  f"accessible = {str(number <= 3).lower()}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home" / ".config" / "locker-ctl" / "lockers").mkdir(parents=True)
    return tmp_path / "home"


def run_ctl(argv: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / argv[0]), *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.slow
def test_the_locker_ctl_session_in_mqtt_api_md_runs_as_written(
    tmp_path: Path, home: Path, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    commands = console_commands(GUIDE.read_text(), "locker-ctl")
    assert len(commands) >= 10, "the guide's locker-ctl session was not found"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCKER_AGENT_", "LOCKER_CTL_"))} | {"HOME": str(home)}

    def site(argv: list[str]) -> list[str]:
        argv = [str(home) + a[1:] if a.startswith("~/") else a for a in argv]
        argv = [mosquitto.host if a == "broker.example.com" else a for a in argv]
        if argv[0] == "locker-ctl" and argv[1] != "keygen" and "--host" not in argv:
            argv[1:1] = ["--host", mosquitto.host]
        if argv[0] == "locker-ctl" and argv[1] != "keygen":
            argv[1:1] = ["--port", str(mosquitto.port)]
        return argv

    keygen, *rest = commands
    assert keygen[:2] == ["locker-ctl", "keygen"]
    made = subprocess.run([str(BIN / "locker-ctl"), *site(keygen)[1:]], capture_output=True,
                          text=True, env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    operator_pub = made.stdout.strip()
    config = l0042_config(tmp_path / "l0042.toml", tmp_path / "state", mosquitto, operator_pub)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    watchers: list[tuple[list[str], subprocess.Popen[str]]] = []
    try:
        # enrolment, as the guide's comment says: L-0042.pub is `locker-agent identity --json`
        deadline = time.monotonic() + 30
        while not (tmp_path / "state" / "identity.key").exists():
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.1)
        identity = subprocess.run(
            [str(BIN / "locker-agent"), "identity", "--json", "--config", str(config)],
            capture_output=True, text=True, env=env, timeout=60)
        assert identity.returncode == 0, identity.stderr
        (home / ".config/locker-ctl/lockers/L-0042.pub").write_text(identity.stdout)
        for argv in rest:  # an operator's watchers run in other terminals all along
            if argv[:2] == ["locker-ctl", "watch"]:
                watchers.append((argv, run_ctl(site(argv), env)))
        time.sleep(1.0)  # the watchers subscribe (a late one still gets the top-up below)
        for argv in rest:
            if argv[0] == "export":
                name, _, value = argv[1].partition("=")
                env[name] = str(home) + value[1:] if value.startswith("~/") else value
                continue
            if argv[:2] == ["locker-ctl", "watch"]:
                continue
            done = subprocess.run([str(BIN / "locker-ctl"), *site(argv)[1:]],
                                  capture_output=True, text=True, env=env, timeout=60)
            assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout}\n{done.stderr}"
            if argv[1] == "send":
                assert json.loads(done.stdout)["ok"] is True, done.stdout
            if argv[1] == "fleet":
                header = GUIDE.read_text().split("$ locker-ctl fleet", 1)[1].splitlines()[1]
                assert done.stdout.split() [:8] == header.split()[:8], done.stdout
                assert "L-0042" in done.stdout and "online" in done.stdout
        extra = 0
        while any("--count" in argv and w.poll() is None for argv, w in watchers):
            # a real fleet makes events all the time; here a few more parcels do
            assert extra < 20, "the counting watcher never got its events"
            extra += 1
            subprocess.run(
                [str(BIN / "locker-ctl"), *site(["locker-ctl", "send", "L-0042", "assign",
                                                 f"assignment_id=EXTRA-{extra}", "size=S",
                                                 f"pickup_code={73190200 + extra}"])[1:]],
                capture_output=True, text=True, env=env, timeout=60)
            time.sleep(0.2)
        for argv, watcher in watchers:
            if "--count" in argv:
                out, err = watcher.communicate(timeout=30)
                assert watcher.returncode == 0, err
            else:
                time.sleep(0.5)
                watcher.terminate()
                out, err = watcher.communicate(timeout=10)
            lines = out.splitlines()
            assert lines, f"{shlex.join(argv)} printed nothing: {err}"
            assert all(json.loads(line) for line in lines)
            if "--count" in argv:
                assert len(lines) == int(argv[argv.index("--count") + 1])
    finally:
        for _, watcher in watchers:
            if watcher.poll() is None:
                watcher.kill()
        assert agent.terminate() == 0


def readme_commands() -> list[str]:
    """The README's inline commands a newcomer copies while `make run` runs."""
    text = README.read_text()
    spans = re.findall(r"`([^`]*(?:locker-ctl|locker-agent\s+status)[^`]*)`", text, flags=re.S)
    return [" ".join(span.split()) for span in spans if span.lstrip().startswith(
        (".venv/bin/locker-ctl", "LOCKER_AGENT_STATE_DIR=.state"))]


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A directory that looks like the checkout to the README's commands."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in (".venv", "config"):
        (root / name).symlink_to(REPO / name)
    yield root


@pytest.mark.slow
def test_the_readmes_demo_commands_run_as_written(checkout: Path) -> None:
    commands = readme_commands()
    assert any("send demo-locker-001 assign" in c for c in commands), commands
    assert any("locker-agent status" in c for c in commands), commands
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCKER_AGENT_", "LOCKER_CTL_"))}
    with demo_agent(checkout / ".state", env={"LOCKER_AGENT_MQTT__ENABLED": "true"}):
        for command in commands:
            watching = " watch " in command
            process = subprocess.Popen(["bash", "-c", command], cwd=checkout, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if watching:  # runs until Ctrl-C: it must connect and print the locker's state
                assert process.stdout is not None
                ready, _, _ = select.select([process.stdout], [], [], 30)
                first = process.stdout.readline() if ready else ""
                process.terminate()
                _, err = process.communicate(timeout=60)
                assert first.strip(), f"{command}: printed nothing in 30 s\n{err}"
                assert json.loads(first)
                continue
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, f"{command}\n{out}\n{err}"
            if " send " in command:
                assert json.loads(out)["ok"] is True, out
