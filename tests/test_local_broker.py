"""The agent's own Mosquitto, with real processes: it starts, serves, stops and comes back."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from locker_agent.cloud import local_broker as local_broker_module
from locker_agent.cloud.local_broker import LocalBroker, LocalBrokerError

WAIT = 5.0
REPO = Path(__file__).resolve().parent.parent


def roundtrip(broker: LocalBroker, client_id: str = "probe") -> bytes:
    """Connect with paho (MQTT 5), publish to ourselves at QoS 1, return what came back."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    connected, subscribed = threading.Event(), threading.Event()
    received: list[bytes] = []
    got_message = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if not rc.is_failure:
            connected.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        got_message.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connected.wait(WAIT), "no CONNACK from the local broker"
        client.subscribe("locker/local/#", qos=1)
        assert subscribed.wait(WAIT)
        client.publish("locker/local/ping", b"pong", qos=1).wait_for_publish(WAIT)
        assert got_message.wait(WAIT)
        return received[0]
    finally:
        client.disconnect()
        client.loop_stop()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


BrokerMaker = Callable[..., LocalBroker]


@pytest.fixture
def new_broker(tmp_path: Path) -> Iterator[BrokerMaker]:
    """Build LocalBrokers under tmp_path; any process a failed test left running is killed."""
    made: list[LocalBroker] = []

    def build(name: str = "state", **options: Any) -> LocalBroker:
        made.append(LocalBroker(tmp_path / name, **options))
        return made[-1]

    yield build
    for broker in made:
        process = broker._process
        if process is not None and alive(process.pid):
            os.kill(process.pid, signal.SIGKILL)


def test_starts_serves_and_stops_without_leaving_a_process(
    tmp_path: Path, new_broker: BrokerMaker, caplog: pytest.LogCaptureFixture
) -> None:
    broker = new_broker()

    async def scenario() -> int:
        await broker.start()
        assert broker.running and broker.port not in (0, 1883)
        assert broker._process is not None
        pid = broker._process.pid
        assert await asyncio.to_thread(roundtrip, broker) == b"pong"
        await broker.stop()
        await broker.stop()  # idempotent
        return pid

    with caplog.at_level(logging.INFO, logger=local_broker_module.__name__):
        pid = asyncio.run(scenario())

    assert not broker.running
    assert not alive(pid)
    assert not (tmp_path / "state" / "mosquitto" / "mosquitto.pid").exists()
    assert (tmp_path / "state" / "mosquitto" / "mosquitto.db").exists()  # saved on the way out
    listening = [r for r in caplog.records if r.getMessage() == "local MQTT broker listening"]
    assert len(listening) == 1
    fields = listening[0].fields  # type: ignore[attr-defined]
    assert fields["host"] == "127.0.0.1" and fields["port"] == broker.port
    assert fields["pid"] == pid


def test_prefers_the_fixed_range_and_never_1883(new_broker: BrokerMaker) -> None:
    broker = new_broker()

    async def scenario() -> None:
        await broker.start()
        try:
            free_in_range = [p for p in local_broker_module.PREFERRED_PORTS if p != broker.port]
            assert broker.port in local_broker_module.PREFERRED_PORTS or not free_in_range
            assert broker.port != 1883
        finally:
            await broker.stop()

    asyncio.run(scenario())


def test_two_brokers_in_different_state_dirs_get_different_ports(new_broker: BrokerMaker) -> None:
    first, second = new_broker("one"), new_broker("two")

    async def scenario() -> None:
        await asyncio.gather(first.start(), second.start())
        try:
            assert first.port != second.port
            assert await asyncio.to_thread(roundtrip, first, "one") == b"pong"
            assert await asyncio.to_thread(roundtrip, second, "two") == b"pong"
        finally:
            await asyncio.gather(first.stop(), second.stop())

    asyncio.run(scenario())


def test_a_missing_binary_names_the_ways_out(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "state", binary=str(tmp_path / "no" / "mosquitto"))
    with pytest.raises(LocalBrokerError) as caught:
        asyncio.run(broker.start())
    message = str(caught.value)
    assert "sudo apt-get install mosquitto" in message
    assert "mqtt.host" in message and "mqtt.enabled = false" in message
    assert not broker.running


def test_no_mosquitto_anywhere_names_the_ways_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(LocalBrokerError, match="sudo apt-get install mosquitto"):
        asyncio.run(LocalBroker(tmp_path / "state").start())


def test_a_taken_fixed_port_fails_with_the_log_tail(new_broker: BrokerMaker) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = new_broker(port=port)
        with pytest.raises(LocalBrokerError, match="Address already in use") as caught:
            asyncio.run(broker.start())
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert not broker.running


def test_start_again_after_the_broker_died_uses_the_same_port(new_broker: BrokerMaker) -> None:
    broker = new_broker()

    async def scenario() -> None:
        await broker.start()
        port = broker.port
        assert broker._process is not None
        os.kill(broker._process.pid, signal.SIGKILL)
        assert await asyncio.wait_for(broker.wait(), WAIT) == -signal.SIGKILL
        assert not broker.running
        await broker.start()
        try:
            assert broker.running and broker.port == port
            assert await asyncio.to_thread(roundtrip, broker) == b"pong"
        finally:
            await broker.stop()

    asyncio.run(scenario())


def test_a_broker_left_by_a_killed_agent_is_stopped_first(
    tmp_path: Path, new_broker: BrokerMaker
) -> None:
    left_behind, successor = new_broker(), new_broker()

    async def scenario() -> None:
        await left_behind.start()  # and never stopped, as if its agent had been SIGKILLed
        assert left_behind._process is not None
        old_pid = left_behind._process.pid
        await successor.start()
        try:
            assert not alive(old_pid)
            assert successor.running
            assert await asyncio.to_thread(roundtrip, successor) == b"pong"
            await left_behind.stop()  # must not disturb the successor's pid file
            assert (tmp_path / "state" / "mosquitto" / "mosquitto.pid").exists()
        finally:
            await successor.stop()

    asyncio.run(scenario())


def test_start_while_running_is_a_no_op(new_broker: BrokerMaker) -> None:
    broker = new_broker()

    async def scenario() -> None:
        await broker.start()
        try:
            process = broker._process
            await broker.start()
            assert broker._process is process
        finally:
            await broker.stop()

    asyncio.run(scenario())


AGENT_STAND_IN = """
import asyncio, sys, time
from pathlib import Path
from locker_agent.cloud.local_broker import LocalBroker

async def main() -> None:
    broker = LocalBroker(Path(sys.argv[1]))
    await broker.start()
    assert broker._process is not None
    print(broker._process.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_the_broker_goes_when_its_agent_is_killed(tmp_path: Path) -> None:
    """Needs setpriv (util-linux, essential on Debian): without it a broker would be orphaned."""
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT_STAND_IN, str(tmp_path / "state")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        broker_pid = int(agent.stdout.readline())
        assert alive(broker_pid)
    finally:
        agent.kill()
        agent.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(broker_pid)
    assert "terminating" in (tmp_path / "state" / "mosquitto" / "mosquitto.log").read_text()
