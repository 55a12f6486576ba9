"""Command round trip: ``assign`` published by a cloud client → its reply received.

Its floor (``bench.floors``) is two MQTT hops and one commit: the command in, its inbox record
and transition committed, the reply out.

The agent is a real ``locker-agent run`` process (SQLite at synchronous=FULL) connected to a
Mosquitto the bench starts on a free port; the client is locker-ctl's FleetClient (MQTT 5,
response topic and correlation data). Each assignment is cancelled again, untimed, so the
compartments never run out.
"""

from __future__ import annotations

import socket
import tempfile
import time
import uuid
from pathlib import Path

from bench.broker import Broker
from bench.daemon import DaemonProcess
from bench.figures import Figure, Target
from bench.floors import Floors
from bench.lockers import operator_client, write_locker_config
from locker_agent.config import MqttConfig
from locker_agent.ctl.client import FleetClient

TARGET = Target.all_of(Target.ratio("median", 3), Target.ratio("p99", 5))
"""Issue 19, against 2 MQTT hops + 1 commit measured in the same run."""
LOCKER = "bench-rtt"
PAIR_S = 2 / float(MqttConfig.model_fields["max_commands_per_s"].default)
"""An assign and its cancel at most this often: the locker's default admission rate.

Sent back to back, the bench went past the 20 commands a second a locker admits (its burst of
50 was spent within the first 25 pairs), and every later command waited ~50 ms in the
admission queue: most of the round trip then measured the rate limit (docs/benchmarks.md)."""


def no_delay(client: FleetClient) -> None:
    """Switch Nagle's algorithm off on the cloud client's socket (see docs/benchmarks.md).

    paho leaves it on; a small PUBLISH then waits for the ACK of the previous segment, which
    the peer delays by up to 40 ms. The cloud's side is not what this figure measures.
    """
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def wait_online(client: FleetClient, locker_id: str, timeout: float = 30.0) -> None:
    """Until the locker's retained birth message says it is online."""
    online: list[bool] = []
    client.subscribe(f"lockers/{locker_id}/status",
                     lambda m: online.append(bool(m.json().get("online"))))
    deadline = time.monotonic() + timeout
    while not (online and online[-1]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{locker_id} did not come online")
        time.sleep(0.02)


def round_trips(samples: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-rtt-") as tmp, \
            Broker(Path(tmp, "broker")) as broker:
        config = write_locker_config(
            Path(tmp, "locker.toml"), locker_id=LOCKER, state_dir=Path(tmp, "state"),
            broker=(broker.host, broker.port),
        )
        with DaemonProcess(config, Path(tmp, "agent")), \
                operator_client(broker.host, broker.port) as client:
            no_delay(client)
            wait_online(client, LOCKER)
            timings = []
            for index in range(samples + 5):
                pair_started = time.monotonic()
                assignment_id = f"p-{index}-{uuid.uuid4().hex[:6]}"
                # signed and sealed before the clock starts: that is the cloud's work
                document = client.envelope(LOCKER, "assign", {
                    "assignment_id": assignment_id, "size": "S",
                    "pickup_code": f"{index:08d}",
                })
                started = time.perf_counter()
                reply = client.send(LOCKER, "assign", document)
                elapsed = (time.perf_counter() - started) * 1000
                if not reply.get("ok"):
                    raise RuntimeError(f"assign refused: {reply}")
                if index >= 5:  # the first few warm caches up
                    timings.append(elapsed)
                client.command(LOCKER, "cancel", {"assignment_id": assignment_id,
                                                  "reason": "bench"})
                # within the rate the locker admits: faster, commands wait for admission
                time.sleep(max(0.0, pair_started + PAIR_S - time.monotonic()))
            return timings


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    timings = round_trips(20 if smoke else 300)
    return [Figure(
        "command round trip (assign → reply)", "ms", timings, f"{len(timings)} commands",
        TARGET, notes=["locker-agent process ↔ local Mosquitto ↔ FleetClient, MQTT 5, QoS 1; "
                       "5 warm-up commands not counted; timed from the publish of the signed, "
                       "sealed command to its reply; one assign and its cancel every "
                       f"{PAIR_S * 1000:.0f} ms, within the locker's admission rate"],
        floor=floors.round_trip(),
    )]
