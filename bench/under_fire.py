"""Under fire: unlock latency and the longest relay pulse while the locker is attacked.

One in-process agent (simulated backend, the cloud link to a local Mosquitto, the kiosk API
on) takes pickups twice in the same run: once quiet, once while another process floods its
command topics with 1,000 junk commands a second and 500 idle HTTP connections sit on its
API. The simulated driver records when each coil was energised and let go.
Targets (issue 15): the longest pulse within the configured pulse + 50 ms; unlock p99 under
fire at most 3x the quiet p99 of the same run.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.broker import Broker
from bench.figures import Figure, Target
from bench.floors import Floors
from bench.lockers import write_locker_config
from bench.world import pickup_latencies
from locker_agent.config import load_config
from locker_agent.runtime.daemon import Agent, build_agent, settle_heap

LOCKER = "bench-fire"
PULSE_MS = 50
JUNK_PER_S = 1000
IDLE_CONNECTIONS = 500


def _pulses_ms(agent: Agent, since: float) -> list[float]:
    """How long each coil stayed energised, from the simulated driver's own record."""
    simulator = agent.simulator
    assert simulator is not None
    return [(off - on) * 1000 for _, on, off in simulator.pulse_log if on >= since]


JUNK = r"""
import json, sys, time, uuid
from datetime import UTC, datetime, timedelta
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, locker, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"junk-{uuid.uuid4()}")
client.connect(host, port)
client.loop_start()
expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
names = ("open", "assign", "unlock_everything", "ping", "cancel")
sent, started = 0, time.monotonic()
while True:
    due = int((time.monotonic() - started) * rate)
    while sent < due:
        client.publish(f"lockers/{locker}/cmd/{names[sent % len(names)]}", json.dumps(
            {"id": str(uuid.uuid4()), "expires_at": expires, "args": {"n": sent}}))
        sent += 1
    print(sent, flush=True)
    time.sleep(0.005)
"""


class Junk:
    """Another process publishing junk commands to the locker at ``rate`` a second: the
    attacker is not in the locker's process, and must not share its interpreter's lock."""

    def __init__(self, host: str, port: int, rate: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", JUNK, host, str(port), LOCKER, str(rate)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.sent = 0

    def stop(self) -> None:
        self._process.terminate()
        out, _ = self._process.communicate(timeout=10)
        lines = out.split()
        self.sent = int(lines[-1]) if lines else 0


def _idle_connections(host: str, port: int, count: int) -> list[socket.socket]:
    opened = []
    for _ in range(count):
        connection = socket.create_connection((host, port))
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: locker\r\n")  # never finished
        opened.append(connection)
    return opened


async def _measure(config: Path, broker: Broker, samples: int) -> dict[str, list[float]]:
    agent = build_agent(load_config(config))
    await agent.start()
    settle_heap()  # as `locker-agent run` does once READY
    try:
        quiet = await pickup_latencies(agent, samples)
        quiet_pulses = _pulses_ms(agent, 0.0)
        assert agent.api is not None
        host, port = agent.api.host, agent.api.port
        idle = await asyncio.to_thread(_idle_connections, host, port, IDLE_CONNECTIONS)
        junk = Junk(broker.host, broker.port, JUNK_PER_S)
        try:
            await asyncio.sleep(1.0)  # the flood is on
            under_fire_since = time.monotonic()
            fire = await pickup_latencies(agent, samples)
        finally:
            junk.stop()
            for connection in idle:
                connection.close()
        fire_pulses = _pulses_ms(agent, under_fire_since)
        return {"quiet": quiet, "fire": fire, "quiet_pulses": quiet_pulses,
                "fire_pulses": fire_pulses, "junk_sent": [float(junk.sent)]}
    finally:
        await agent.stop()


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    samples = 10 if smoke else 100
    with tempfile.TemporaryDirectory(prefix="bench-fire-") as tmp, \
            Broker(Path(tmp, "broker")) as broker:
        config = write_locker_config(
            Path(tmp, "locker.toml"), locker_id=LOCKER, state_dir=Path(tmp, "state"),
            broker=(broker.host, broker.port), api=True, policies={"lock_pulse_ms": PULSE_MS},
        )
        result = asyncio.run(_measure(config, broker, samples))
    quiet = Figure("unlock latency, quiet (same run as under fire)", "ms", result["quiet"],
                   f"{len(result['quiet'])} pickups", floor=floors.one_commit())
    fire_target = Target("p99 ≤ 3x the quiet p99", "p99", 3 * quiet.p99)
    note = (f"{JUNK_PER_S} junk commands/s on the broker ({int(result['junk_sent'][0])} sent) "
            f"and {IDLE_CONNECTIONS} idle HTTP connections on the API")
    pulse_target = Target(f"max ≤ pulse + 50 ms ({PULSE_MS + 50} ms)", "max", PULSE_MS + 50.0)
    return [
        quiet,
        Figure("unlock latency under fire", "ms", result["fire"],
               f"{len(result['fire'])} pickups", fire_target, notes=[note],
               floor=floors.one_commit()),
        Figure("longest relay pulse under fire", "ms", result["fire_pulses"],
               f"{len(result['fire_pulses'])} pulses of {PULSE_MS} ms", pulse_target,
               notes=["from the simulated driver's record of when each coil was energised "
                      "and let go (its pulse ends on a timer thread, as a relay driver's)"]),
    ]
