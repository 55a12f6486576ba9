"""``locker-ctl`` as an operator runs it: a real broker, a real agent process, real commands."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography.hazmat.primitives import serialization

from locker_agent.ctl.cli import command_arguments, fleet_view
from locker_agent.ctl.client import Received
from tests.conftest import BIN, ConfigWriter
from tests.support.mosquitto import (  # noqa: F401 - fixtures
    BrokerFactory,
    MosquittoBroker,
    free_port,
    mosquitto,
    mosquitto_factory,
    password_file,
)
from tests.support.operator import OPERATOR_KEY, STATE_DIRS

LOCKER = "ctl-locker"
AGENT = [str(BIN / "locker-agent")] if (BIN / "locker-agent").exists() else [
    sys.executable, "-m", "locker_agent.cli"
]
CTL = [str(BIN / "locker-ctl")] if (BIN / "locker-ctl").exists() else [
    sys.executable, "-m", "locker_agent.ctl.cli"
]


def clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items()
        if not k.startswith(("LOCKER_AGENT_", "LOCKER_CTL_"))
    }


class Ctl:
    """Runs ``locker-ctl`` against one broker, as the test operator: signing with its key
    (``$LOCKER_CTL_SIGN_KEY``) and sealing codes to the lockers' enrolled identity keys
    (``$LOCKER_CTL_LOCKER_KEYS``)."""

    def __init__(self, port: int, keys: Path) -> None:
        self.port = port
        self.sign_key = keys / "operator.pem"
        self.sign_key.write_bytes(OPERATOR_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.locker_keys = keys / "lockers"
        self.locker_keys.mkdir()

    def enrol(self, locker_id: str, state_dir: Path) -> None:
        """Enrol a locker's identity key (it is made when the locker starts)."""
        (self.locker_keys / f"{locker_id}.pub").symlink_to(state_dir / "identity.pub")

    def argv(self, *args: str) -> list[str]:
        return [*CTL, "--port", str(self.port), *args]

    def env(self, *, as_operator: bool = True) -> dict[str, str]:
        env = clean_env()
        if as_operator:
            env.update(LOCKER_CTL_SIGN_KEY=str(self.sign_key),
                       LOCKER_CTL_LOCKER_KEYS=str(self.locker_keys))
        return env

    def __call__(self, *args: str, timeout: float = 60, as_operator: bool = True
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env(as_operator=as_operator),
            timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.sign_key.parent,
        )

    def reply(self, *args: str, as_operator: bool = True) -> tuple[int, dict[str, Any]]:
        result = self("send", *args, as_operator=as_operator)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return result.returncode, document


class Agents:
    """``locker-agent run`` processes; every one is stopped with SIGTERM at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, config: Path) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"agent-{len(self.processes)}.log").open("ab")
        process = subprocess.Popen(
            [*AGENT, "run", "--config", str(config), "--no-console"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=clean_env(),
        )
        log.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
                raise AssertionError("the agent did not stop on SIGTERM") from None
        return process.returncode

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("agent-*.log"))
        )


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    running = Agents(tmp_path)
    try:
        yield running
    finally:
        codes = [running.stop(process) for process in running.processes]
        assert all(p.poll() is not None for p in running.processes), "an agent process leaked"
        assert codes == [0] * len(codes), running.logs()


@pytest.fixture
def ctl(mosquitto: MosquittoBroker, tmp_path: Path) -> Ctl:  # noqa: F811
    keys = tmp_path / "ctl-keys"
    keys.mkdir()
    return Ctl(mosquitto.port, keys)


AgentStarter = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_agent(
    write_config: ConfigWriter, mosquitto: MosquittoBroker, agents: Agents, ctl: Ctl,  # noqa: F811
) -> AgentStarter:
    """Start an agent on the test broker and return once it answers ``ping``."""

    def start(**mqtt: object) -> subprocess.Popen[bytes]:
        config = write_config(
            mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.2,
                  "reconnect_max_s": 1.0, **mqtt},
            locker_id=LOCKER,
        )
        if not (ctl.locker_keys / f"{LOCKER}.pub").is_symlink():
            ctl.enrol(LOCKER, STATE_DIRS[LOCKER])
        process = agents.start(config)
        deadline = time.monotonic() + 30
        while True:
            result = ctl("send", LOCKER, "ping", "--timeout", "1")
            if result.returncode == 0:
                return process
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the agent never answered ping:\n{agents.logs()}")

    return start


def read_line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "nothing was printed in time"
    return stream.readline()


# ---------------------------------------------------------------------------------- send


def test_send_answers_ok_refused_and_usage_with_0_1_2(
    start_agent: AgentStarter, ctl: Ctl
) -> None:
    start_agent()
    code, reply = ctl.reply(LOCKER, "ping")
    assert code == 0 and reply["ok"] is True and reply["result"]["pong"] is True

    code, reply = ctl.reply(LOCKER, "assign", "assignment_id=PKG-1", "pickup_code=01234500",
                            "size=S")
    assert code == 0, reply
    assert reply["result"]["size"] == "S" and reply["result"]["compartment_id"]

    code, reply = ctl.reply(LOCKER, "assign", "assignment_id=PKG-2", "pickup_code=12345600",
                            "size=XXL")
    assert code == 1
    assert reply["ok"] is False
    assert reply["error"]["field"] == "args.size"
    assert "XXL" in reply["error"]["message"]

    code, reply = ctl.reply(LOCKER, "assign", "--json",
                            '{"assignment_id": "PKG-3", "pickup_code": "55667788", "size": "M"}',
                            "accessible=false")
    assert code == 0, reply

    code, reply = ctl.reply(LOCKER, "extend", "assignment_id=PKG-3", "hours=0")
    assert code == 1 and reply["error"]["code"] == "invalid"

    # MQTT 3.1.1 has no response topic: the reply comes back through the envelope's reply_to
    result = ctl("--protocol", "3.1.1", "send", LOCKER, "ping")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True

    for bad in (["send", LOCKER, "ping", "oops"], ["send", LOCKER, "Ping"],
                ["send", "a/b", "ping"], ["send", LOCKER, "assign", "--json", "[1]"],
                ["send", LOCKER]):
        result = ctl(*bad)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.strip()


def test_send_to_a_locker_that_does_not_answer_gives_up_with_2(ctl: Ctl) -> None:
    result = ctl("send", "nobody-here", "ping", "--timeout", "1")
    assert result.returncode == 2
    assert "no reply from nobody-here to ping within 1 s" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------------- fleet


def test_fleet_shows_presence_and_free_compartments(
    start_agent: AgentStarter, ctl: Ctl, agents: Agents
) -> None:
    agent = start_agent()
    code, _ = ctl.reply(LOCKER, "assign", "assignment_id=PKG-1", "pickup_code=48291300", "size=L")
    assert code == 0
    code, _ = ctl.reply(LOCKER, "set_service", "in_service=false", "compartment_id=A01",
                        "reason=broken hinge")
    assert code == 0

    deadline = time.monotonic() + 10
    while True:  # the compartments' retained messages follow the replies by a moment
        result = ctl("fleet", "--seconds", "0.5")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        row = next((line.split() for line in lines if line.startswith(LOCKER)), None)
        if (row and "S:2" in row and "L:0" in row) or time.monotonic() > deadline:
            break
    assert lines[0].split()[:3] == ["LOCKER", "PRESENCE", "SINCE"]
    assert row is not None, result.stdout
    assert row[1] == "online"
    assert "S:2" in row and "M:1" in row and "L:0" in row and "XL:1" in row, result.stdout
    assert row[-1] == "1"  # out of service: A01

    as_json = ctl("fleet", "--seconds", "0.5", "--json")
    (locker,) = [v for v in json.loads(as_json.stdout) if v["locker_id"] == LOCKER]
    assert locker["online"] is True and locker["compartments"] == 6
    assert locker["free_by_size"] == {"S": 2, "M": 1, "L": 0, "XL": 1}

    assert agents.stop(agent) == 0
    result = ctl("fleet", "--seconds", "0.5")
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith(LOCKER))
    assert row[1] == "offline"


def test_fleet_view_reads_topics_under_a_prefix_with_slashes() -> None:
    def message(topic: str, payload: object) -> Received:
        return Received(topic, json.dumps(payload).encode(), True, 0.0)

    views = fleet_view([
        message("a/b/L1/status", {"online": True, "free_by_size": {"S": 1, "M": 0}}),
        message("a/b/L1/compartments/C1", {"size": "S", "state": "free"}),
        message("a/b/L1/compartments/C2", {"size": "M", "state": "occupied"}),
        message("a/b/L2/compartments/C1", {"size": "S", "state": "out_of_service"}),
        Received("a/b/L3/status", b"", True, 0.0),  # a cleared retained message
        Received("a/b/L4/status", b"not json", True, 0.0),
    ], "a/b")
    assert [v.locker_id for v in views] == ["L1", "L2"]
    assert views[0].free_by_size() == {"S": 1, "M": 0}
    assert views[0].count(frozenset({"occupied"})) == 1
    assert views[1].online is None and views[1].as_dict()["out_of_service"] == 1


# --------------------------------------------------------------------------------- watch


def test_watch_prints_one_json_line_per_event(
    start_agent: AgentStarter, ctl: Ctl
) -> None:
    start_agent()
    watcher = subprocess.Popen(
        ctl.argv("watch", LOCKER, "--events-only", "--count", "2", "--seconds", "30"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    try:
        assert watcher.stderr is not None and watcher.stdout is not None
        assert read_line(watcher.stderr, 20).startswith("watching ")
        for n in (1, 2):
            code, _ = ctl.reply(LOCKER, "assign", f"assignment_id=PKG-{n}",
                                f"pickup_code=4829100{n}", "size=S")
            assert code == 0
        assert watcher.wait(20) == 0
        lines = watcher.stdout.read().splitlines()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(5)
    assert len(lines) == 2
    events = [json.loads(line) for line in lines]
    assert {e["topic"] for e in events} == {f"lockers/{LOCKER}/events"}
    assert [e["payload"]["type"] for e in events] == ["reserved", "reserved"]
    assert [e["payload"]["assignment_id"] for e in events] == ["PKG-1", "PKG-2"]
    assert events[1]["payload"]["seq"] > events[0]["payload"]["seq"]
    assert all(e["retained"] is False for e in events)


def test_watch_without_filter_sees_retained_state_and_stops_after_seconds(
    start_agent: AgentStarter, ctl: Ctl
) -> None:
    start_agent()
    result = ctl("watch", "--seconds", "1.5")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    topics = {line["topic"] for line in lines}
    assert f"lockers/{LOCKER}/status" in topics
    assert sum(1 for t in topics if t.startswith(f"lockers/{LOCKER}/compartments/")) == 6
    status = next(line for line in lines if line["topic"].endswith("/status"))
    assert status["retained"] is True and status["payload"]["online"] is True


def test_watch_ends_quietly_on_ctrl_c(ctl: Ctl) -> None:
    def default_sigint() -> None:  # a shell may have started us with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    watcher = subprocess.Popen(
        ctl.argv("watch"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(), stdin=subprocess.DEVNULL, preexec_fn=default_sigint,
    )
    try:
        assert watcher.stderr is not None
        assert read_line(watcher.stderr, 20).startswith("watching ")
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(10) == 0
        assert "Traceback" not in watcher.stderr.read()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(5)


# ------------------------------------------------------------------------------- signing


def test_keygen_and_a_signed_open(
    start_agent: AgentStarter, ctl: Ctl, tmp_path: Path
) -> None:
    key = tmp_path / "operator.pem"
    result = ctl("keygen", str(key))
    assert result.returncode == 0, result.stderr
    public = result.stdout.strip()
    assert len(public) == 44 and public.endswith("=")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN PRIVATE KEY" in key.read_text()

    again = ctl("keygen", str(key))
    assert again.returncode == 2 and "exists" in again.stderr
    assert key.read_text() and ctl("keygen", str(key), "--force").returncode == 0
    public = ctl("keygen", str(key), "--force").stdout.strip()

    start_agent(operator_public_key=public)
    open_args = ("compartment_id=A02", "reason=customer locked out", "operator=ops.jane")
    code, reply = ctl.reply(LOCKER, "open", *open_args, as_operator=False)
    assert code == 1
    assert reply["error"]["code"] == "bad_signature"
    assert reply["error"]["field"] == "signature"

    code, reply = ctl.reply(LOCKER, "open", *open_args, "--sign-key", str(key))
    assert code == 0, reply
    assert reply["result"]["compartment_id"] == "A02"

    other = tmp_path / "other.pem"
    assert ctl("keygen", str(other)).returncode == 0
    code, reply = ctl.reply(LOCKER, "open", *open_args, "--sign-key", str(other))
    assert code == 1 and reply["error"]["code"] == "unknown_key"  # the key is named by its id

    bad = tmp_path / "bad.pem"
    bad.write_text("this is no key\n")
    for path in (bad, tmp_path / "missing.pem"):
        result = ctl("send", LOCKER, "open", *open_args, "--sign-key", str(path))
        assert result.returncode == 2
        assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_keygen_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CTL, "keygen", str(tmp_path / "no" / "such" / "dir" / "key.pem")],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert result.returncode == 2
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- broker down


def test_a_broker_that_is_down_is_exit_2_with_a_clear_message() -> None:
    port = free_port()  # nothing listens here
    for args in (["send", LOCKER, "ping"], ["watch", "--count", "1"], ["fleet"]):
        result = subprocess.run(
            [*CTL, "--port", str(port), *args, "--timeout", "2"],
            capture_output=True, text=True, env=clean_env(), timeout=60,
        )
        assert result.returncode == 2, (args, result.stderr)
        assert f"cannot reach the broker at 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_credentials_come_from_options_or_the_environment(
    mosquitto_factory: BrokerFactory, tmp_path: Path  # noqa: F811
) -> None:
    users = password_file(tmp_path / "passwd", {"ops": "s3cret"})
    broker = mosquitto_factory(password_file=users)

    def fleet(*options: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CTL, "--port", str(broker.port), *options, "fleet", "--seconds", "0.2"],
            capture_output=True, text=True, env={**clean_env(), **env}, timeout=60,
        )

    for protocol in ("5", "3.1.1"):
        refused = fleet("--protocol", protocol, "--username", "ops", "--password", "wrong")
        assert refused.returncode == 2
        assert "refused the connection" in refused.stderr, refused.stderr
        assert "the broker at 127.0.0.1:" in refused.stderr  # names the broker it tried
        assert "Traceback" not in refused.stderr
    accepted = fleet("--username", "ops", LOCKER_CTL_PASSWORD="s3cret")
    assert accepted.returncode == 0, accepted.stderr
    assert "no locker has published" in accepted.stderr
    alone = fleet(LOCKER_CTL_PASSWORD="s3cret")
    assert alone.returncode == 2 and "needs --username" in alone.stderr


def test_a_missing_tls_file_is_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CTL, "--ca-file", str(tmp_path / "ca.pem"), "fleet"],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert result.returncode == 2
    assert "ca.pem: no such file" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------ argument parsing


def test_values_are_json_when_they_parse_and_text_where_the_contract_wants_text() -> None:
    assert command_arguments("assign", None, [
        "assignment_id=123", "pickup_code=01234500", "size=M", "accessible=true",
        "hold_period_h=48", "barcode=null",
    ]) == {
        "assignment_id": "123", "pickup_code": "01234500", "size": "M", "accessible": True,
        "hold_period_h": 48, "barcode": "null",
    }
    assert command_arguments("set_config", '{"remote_open_limit": 3}', ["remote_open_limit=4"]) \
        == {"remote_open_limit": 4}
    assert command_arguments("future_command", None, ["n=1", "s=a=b"]) == {"n": 1, "s": "a=b"}


def test_send_never_puts_a_code_on_the_broker_in_clear(ctl: Ctl) -> None:
    # no identity key for the locker: refused before anything is sent
    result = ctl("send", "unknown-locker", "assign", "assignment_id=p-1", "size=S",
                 "pickup_code=Zq84Hn27", as_operator=False)
    assert result.returncode == 2
    assert "would cross the broker in clear" in result.stderr and "--locker-key" in result.stderr
    assert "Zq84Hn27" not in result.stderr and "Traceback" not in result.stderr


def test_the_fleet_table_shows_no_escape_sequence_a_locker_published() -> None:
    import io

    from locker_agent.ctl.cli import LockerView, print_fleet_table

    view = LockerView("evil\x1b]0;pwned\x07\x1b[2J", status={
        "online": True, "since": "2026-12-07T10:00:00+00:00", "free_by_size": {"S\x1b[31m": 1}})
    out = io.StringIO()
    print_fleet_table([view], out)
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "evil?]0;pwned??[2J" in out.getvalue()
