"""sd_notify to a real AF_UNIX datagram socket, the watchdog's health checks, the real daemon."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from locker_agent.app.health import CheckResult, hardware_alive, loop_responsive
from locker_agent.hardware.simulated import SimulatedLocker
from locker_agent.runtime.systemd_notify import Notifier, Watchdog
from locker_agent.store import Store
from locker_agent.store.health import database_writable
from tests.conftest import BIN, ConfigWriter
from tests.hardware.kerong_emulator import KerongBus


class Receiver:
    """The systemd side: a bound SOCK_DGRAM socket collecting notification datagrams."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # as NOTIFY_SOCKET spells it
        self.received: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        """Everything that arrived so far, without waiting."""
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(4096)
                except BlockingIOError:
                    break
                self.received.append((time.monotonic(), data.decode()))
        finally:
            self.sock.setblocking(True)
        return [message for _, message in self.received]

    def wait_for(self, field: str, timeout: float = 5) -> str:
        """The first not yet consumed message carrying ``field``; waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            for index, (_, message) in enumerate(self.received):
                if field in message.split("\n"):
                    del self.received[: index + 1]
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {field} within {timeout} s; got {self.received}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode()))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    # A short directory of our own: tmp_path can exceed the 108-byte limit of a socket path.
    with tempfile.TemporaryDirectory(prefix="sdn-") as directory:
        path = os.path.join(directory, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield Receiver(sock, path)
        finally:
            sock.close()


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"locker-agent-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield Receiver(sock, "@" + name)
    finally:
        sock.close()


# --- Notifier -------------------------------------------------------------------------------


def test_messages_reach_a_filesystem_socket(receiver: Receiver) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": receiver.address})
    assert notifier.enabled
    assert notifier.ready(status="serving 6 compartments")
    assert notifier.watchdog()
    assert notifier.status("cloud offline")
    assert notifier.stopping()
    assert receiver.wait_for("READY=1") == "READY=1\nSTATUS=serving 6 compartments"
    assert receiver.wait_for("WATCHDOG=1") == "WATCHDOG=1"
    assert receiver.wait_for("STATUS=cloud offline") == "STATUS=cloud offline"
    assert receiver.wait_for("STOPPING=1") == "STOPPING=1"


def test_messages_reach_an_abstract_socket(abstract_receiver: Receiver) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": abstract_receiver.address})
    assert notifier.ready()
    assert abstract_receiver.wait_for("READY=1") == "READY=1"


def test_reloading_carries_monotonic_usec(receiver: Receiver) -> None:
    notifier = Notifier(receiver.address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = dict(line.split("=", 1) for line in receiver.wait_for("RELOADING=1").split("\n"))
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_a_status_cannot_inject_fields(receiver: Receiver) -> None:
    Notifier(receiver.address).status("bad\nREADY=1")
    assert receiver.wait_for("STATUS=bad READY=1") == "STATUS=bad READY=1"


def test_without_notify_socket_everything_is_a_quiet_no_op(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="locker_agent.runtime.systemd_notify")
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None
    said = [r for r in caplog.records if "NOTIFY_SOCKET" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG


def test_send_errors_are_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING, logger="locker_agent.runtime.systemd_notify"):
        for _ in range(5):
            assert notifier.watchdog() is False
        assert notifier.ready() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_a_notifier_recovers_when_the_socket_comes_back(receiver: Receiver) -> None:
    path = receiver.address
    receiver.sock.close()
    os.unlink(path)
    notifier = Notifier(path)
    assert not notifier.watchdog()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    receiver.sock = sock
    assert notifier.watchdog()
    assert receiver.wait_for("WATCHDOG=1")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "4242"}, 0.4),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "4243"}, None),  # another process's
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_the_environment(
    env: dict[str, str], expected: float | None
) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "/run/x", **env}, pid=4242)
    assert notifier.watchdog_interval() == expected
    half = notifier.watchdog_ping_interval()
    assert half == (None if expected is None else expected / 2)


def test_watchdog_pid_defaults_to_this_process() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(env).watchdog_interval() == 2.0


def test_unset_environment_hides_the_socket_from_children(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier.from_environment(unset_environment=True)
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    assert notifier.watchdog_interval() == 1.0
    assert notifier.ready()
    assert receiver.wait_for("READY=1")


# --- Watchdog -------------------------------------------------------------------------------


class Switch:
    """A health check the test turns on and off."""

    name = "switch"

    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> CheckResult:
        return (True, "") if self.ok else (False, "switch is off")


def test_watchdog_pings_while_healthy_stops_on_failure_and_resumes(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    switch = Switch()

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        watchdog = Watchdog(Notifier(receiver.address), [switch, loop_responsive(0.5)], 0.05)
        watchdog.start()
        await asyncio.sleep(0.3)
        healthy = receiver.drain()
        switch.ok = False
        await asyncio.sleep(0.08)  # a round already under way may still ping
        changed = receiver.drain()
        assert "STATUS=unhealthy: switch is off" in changed
        receiver.received.clear()
        await asyncio.sleep(0.3)
        failing = receiver.drain()
        receiver.received.clear()
        switch.ok = True
        await asyncio.sleep(0.3)
        recovered = receiver.drain()
        await watchdog.stop()
        assert not watchdog.running
        return healthy, failing, recovered

    with caplog.at_level(logging.INFO, logger="locker_agent.runtime.systemd_notify"):
        healthy, failing, recovered = asyncio.run(scenario())
    assert healthy.count("WATCHDOG=1") >= 3
    assert failing == []  # no ping, and the status is not repeated
    assert recovered.count("WATCHDOG=1") >= 2
    assert "STATUS=running" in recovered
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # rate-limited: one line for the whole failing spell
    assert "health check switch failed: switch is off" in warnings[0]
    assert any("switch passes again" in r.getMessage() for r in caplog.records)


def test_watchdog_sends_nothing_while_the_loop_is_wedged(receiver: Receiver) -> None:
    """A reader thread stamps each datagram as it arrives; the loop sleeps in a callback."""

    arrivals: list[float] = []
    stop_reading = threading.Event()

    def read() -> None:
        receiver.sock.settimeout(0.02)
        while not stop_reading.is_set():
            try:
                data = receiver.sock.recv(4096)
            except TimeoutError:
                continue
            if data == b"WATCHDOG=1":
                arrivals.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    interval = 0.05

    async def scenario() -> tuple[float, float]:
        watchdog = Watchdog(Notifier(receiver.address), [loop_responsive(1.0)], interval)
        watchdog.start()
        await asyncio.sleep(0.3)
        window: list[float] = []
        unwedged = asyncio.Event()

        def wedge() -> None:
            window.append(time.monotonic())
            time.sleep(interval * 8)
            window.append(time.monotonic())
            unwedged.set()

        asyncio.get_running_loop().call_soon(wedge)
        await unwedged.wait()
        await asyncio.sleep(0.3)
        await watchdog.stop()
        return window[0], window[1]

    try:
        start, end = asyncio.run(scenario())
    finally:
        stop_reading.set()
        reader.join(timeout=2)
    assert any(at < start for at in arrivals)
    assert not [at for at in arrivals if start + 0.005 < at < end]
    assert any(at > end for at in arrivals)


def test_a_check_that_raises_or_hangs_counts_as_failed(receiver: Receiver) -> None:
    def broken() -> CheckResult:
        raise RuntimeError("sensor bus gone")

    async def hangs() -> CheckResult:
        await asyncio.sleep(10)
        return True, ""

    async def scenario() -> tuple[bool, bool, dict[str, str]]:
        notifier = Notifier(receiver.address)
        first = await Watchdog(notifier, [broken], 0.05).check_once()
        watchdog = Watchdog(notifier, [hangs], 0.05)
        second = await watchdog.check_once()
        return first, second, watchdog.failing

    first, second, failing = asyncio.run(scenario())
    assert not first and not second
    assert failing == {"hangs": "hangs did not answer within 0.05 s"}
    assert "WATCHDOG=1" not in receiver.drain()


def test_loop_responsive_fails_on_a_slow_loop() -> None:
    async def scenario() -> tuple[CheckResult, CheckResult]:
        check = loop_responsive(0.05)
        good = await check()  # type: ignore[misc]
        loop = asyncio.get_running_loop()
        loop.call_soon(time.sleep, 0.2)  # a slow callback runs during the probe
        bad = await check()  # type: ignore[misc]
        return good, bad

    good, bad = asyncio.run(scenario())
    assert good[0]
    assert not bad[0] and "event loop lags" in bad[1]


def test_database_writable_passes_leaves_nothing_and_fails_when_locked(tmp_path: Path) -> None:
    store = Store(tmp_path / "locker.db")
    store.migrate()
    try:
        check = database_writable(store, timeout_s=0.1)
        before = store.execute_sql("SELECT count(*) FROM sqlite_master")
        started = time.monotonic()
        assert check() == (True, "database writable")
        assert time.monotonic() - started < 0.5
        assert store.execute_sql("SELECT count(*) FROM sqlite_master") == before
        # Another process holds the write lock: the check fails within its timeout.
        other = Store(tmp_path / "locker.db")
        with other.engine.connect() as conn:
            conn.exec_driver_sql("INSERT INTO locker (id, locker_id, service_seconds) "
                                 "VALUES (1, 'x', 0)")
            started = time.monotonic()
            ok, reason = check()  # type: ignore[misc]
            assert time.monotonic() - started < 1
            assert not ok and "not writable" in reason and "locked" in reason
            conn.rollback()
        other.close()
        assert check() == (True, "database writable")
        assert store.execute_sql("SELECT count(*) FROM locker") == [(0,)]
    finally:
        store.close()


def test_hardware_alive_follows_the_driver() -> None:
    simulator = SimulatedLocker(["A01"])
    agent = SimpleNamespace(locks=simulator, doors=simulator)
    check = hardware_alive(agent)

    async def started() -> CheckResult:
        await simulator.start()
        result = check()
        assert not isinstance(result, tuple) or result[0]
        await simulator.stop()
        return result  # type: ignore[return-value]

    assert check() == (False, "lock driver SimulatedLocker is not started")
    assert asyncio.run(started()) == (True, "hardware alive")

    class Healthy:
        def __init__(self, ok: bool) -> None:
            self.ok = ok

        def healthy(self) -> bool:
            return self.ok

    class Plain:
        pass

    assert hardware_alive(SimpleNamespace(locks=Healthy(True), doors=Plain()))() == (
        True, "hardware alive",
    )
    assert hardware_alive(SimpleNamespace(locks=Plain(), doors=Healthy(False)))() == (
        False, "door sensors Healthy reports unhealthy",
    )


# --- the real daemon ------------------------------------------------------------------------


@contextmanager
def daemon_under_systemd(
    receiver: Receiver, config: Path, output: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``locker-agent run`` as systemd starts it: NOTIFY_SOCKET, a 400 ms WatchdogSec; killed
    at the end if it did not stop by itself."""
    env = {**os.environ, "NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    with output.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "locker-agent"), "run", "--config", str(config), "--no-console"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_daemon_notifies_ready_pings_and_stops(
    receiver: Receiver, write_config: ConfigWriter, clean_env: None, tmp_path: Path
) -> None:
    with daemon_under_systemd(receiver, write_config(), tmp_path / "agent.out") as process:
        receiver.wait_for("READY=1", timeout=10)
        receiver.wait_for("WATCHDOG=1", timeout=2)
        receiver.wait_for("WATCHDOG=1", timeout=2)
        process.send_signal(signal.SIGTERM)
        receiver.wait_for("STOPPING=1", timeout=10)
        assert process.wait(timeout=15) == 0


def test_a_silent_lock_board_does_not_stop_the_watchdog(
    receiver: Receiver, clean_env: None, tmp_path: Path
) -> None:
    # issue 16: with one board silent the agent stopped pinging, and systemd would have
    # restarted it every WatchdogSec, interrupting the board that still works
    with KerongBus(boards=(0,)) as bus:  # board 1 is configured, but nobody answers for it
        config = tmp_path / "locker.toml"
        config.write_text(
            f'locker_id = "two-boards"\nstate_dir = "{tmp_path / "state"}"\n\n'
            f'[hardware]\nbackend = "rs485"\n\n[hardware.rs485]\nport = "{bus.port}"\n'
            'poll_interval_s = 0.05\ntimeout_ms = 20\nretries = 0\n\n'
            '[mqtt]\nenabled = false\n\n'
            '[[compartments]]\nid = "A01"\nsize = "S"\nlock = "0:1"\n\n'
            '[[compartments]]\nid = "B01"\nsize = "S"\nlock = "1:1"\n'
        )
        with daemon_under_systemd(receiver, config, tmp_path / "agent.out") as process:
            receiver.wait_for("READY=1", timeout=15)
            time.sleep(1.0)  # board 1 has long been found silent
            before = sum("WATCHDOG=1" in text for text in receiver.drain())
            time.sleep(1.0)
            after = sum("WATCHDOG=1" in text for text in receiver.drain())
            assert after - before >= 3, (before, after)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
    assert "board_offline" in (tmp_path / "agent.out").read_text()
