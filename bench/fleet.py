"""A fleet on one broker: N agent processes against one Mosquitto, idle and in a rush.

Traffic is read from the broker's own $SYS counters (bytes and messages, both directions,
every packet including keepalives), by a client that connects only to read them; what one
read itself costs is measured first and subtracted. Telemetry runs every 60 s here (the
default is 300 s), so the idle figure is an upper bound of a default locker's.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from bench.broker import Broker
from bench.daemon import DaemonProcess
from bench.figures import Figure, Target
from bench.floors import Floors
from bench.lockers import operator_client, write_locker_config
from bench.round_trip import no_delay

IDLE = Target("≤ 1 KB/min per locker", "median", 1024.0)
TELEMETRY_S = 60
SYS_SETTLE_S = 1.5
"""$SYS counters are published every second: wait this long for a phase to show in them."""
COUNTERS = ("bytes/received", "bytes/sent", "messages/received", "messages/sent")


def _delta(after: dict[str, float], before: dict[str, float], overhead: dict[str, float]
           ) -> dict[str, float]:
    return {k: after[f"$SYS/broker/{k}"] - before[f"$SYS/broker/{k}"] - overhead.get(k, 0.0)
            for k in COUNTERS}


def fleet(agents: int, idle_s: float, slices: int, deliveries: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, \
            Broker(Path(tmp, "broker")) as broker:
        overhead = _read_overhead(broker)
        daemons = []
        try:
            for n in range(agents):
                locker_id = f"fleet-{n:03d}"
                config = write_locker_config(
                    Path(tmp, f"{locker_id}.toml"), locker_id=locker_id,
                    state_dir=Path(tmp, locker_id, "state"), broker=(broker.host, broker.port),
                    policies={"telemetry_interval_s": TELEMETRY_S},
                )
                daemons.append(DaemonProcess(config, Path(tmp, locker_id)).spawn())
            spawned = time.perf_counter()
            for daemon in daemons:
                daemon.wait_ready(120)
            all_ready_s = time.perf_counter() - spawned
            _wait_all_connected(broker, agents)
            time.sleep(SYS_SETTLE_S)
            # idle: nothing but keepalives and telemetry
            idle_bytes, idle_messages = [], []
            step = idle_s / slices
            before = broker.counters()
            for _ in range(slices):
                started = time.monotonic()
                time.sleep(step)
                after = broker.counters()
                minutes = (time.monotonic() - started) / 60
                delta = _delta(after, before, overhead)
                idle_bytes.append((delta["bytes/received"] + delta["bytes/sent"])
                                  / agents / minutes)
                idle_messages.append((delta["messages/received"] + delta["messages/sent"])
                                     / agents / minutes * 60)
                before = after
            broker_rss = psutil.Process(broker.pid).memory_info().rss / 2**20
            # rush: the cloud assigns parcels to every locker, round after round
            rush_before = broker.counters()
            replies = []
            with operator_client(broker.host, broker.port) as cloud:
                no_delay(cloud)
                rush_started = time.monotonic()
                for round_ in range(deliveries):
                    for n in range(agents):
                        started = time.perf_counter()
                        reply = cloud.command(f"fleet-{n:03d}", "assign", {
                            "assignment_id": f"r{round_}-{uuid.uuid4().hex[:8]}",
                            "size": "S", "pickup_code": f"{round_:04d}{n:04d}"})
                        replies.append((time.perf_counter() - started) * 1000)
                        if not reply.get("ok"):
                            raise RuntimeError(f"assign refused: {reply}")
                rush_s = time.monotonic() - rush_started
            time.sleep(SYS_SETTLE_S)
            rush = _delta(broker.counters(), rush_before, overhead)
        finally:
            for daemon in daemons:
                if daemon.process is not None and daemon.process.poll() is None:
                    daemon.process.terminate()  # all at once, then reap each
            for daemon in daemons:
                daemon.stop()
    per_delivery_bytes = (rush["bytes/received"] + rush["bytes/sent"]) / (agents * deliveries)
    per_delivery_messages = (rush["messages/received"] + rush["messages/sent"]) / (
        agents * deliveries)
    where = f"{agents} agent processes, simulated hardware, one Mosquitto"
    return [
        Figure(f"fleet idle: bytes per locker per minute ({agents} agents)", "B/min",
               idle_bytes, f"{idle_s:g} s idle in {slices} slices", IDLE,
               notes=[where, f"telemetry every {TELEMETRY_S} s, keepalive 60 s; broker RSS "
                      f"{broker_rss:.1f} MB with {agents} sessions; all {agents} started "
                      f"together were READY within {all_ready_s:.1f} s on {os.cpu_count()} "
                      "cores"]),
        Figure(f"fleet idle: MQTT packets per locker per hour ({agents} agents)", "pkt/h",
               idle_messages, f"{slices} slices",
               notes=["the broker's $SYS messages counters: every packet in + out, "
                      "keepalives and PUBACKs included"]),
        Figure(f"fleet rush: bytes per delivery ({agents} agents)", "B",
               [per_delivery_bytes], f"{agents * deliveries} assigns in {rush_s:.1f} s",
               notes=[f"assign + reply + event + retained compartment and status; "
                      f"{per_delivery_messages:.1f} MQTT packets per delivery (with PUBACKs)"]),
        Figure(f"fleet rush: command round trip ({agents} agents)", "ms", replies,
               f"{len(replies)} assigns, one at a time across the fleet"),
    ]


def _read_overhead(broker: Broker) -> dict[str, float]:
    """What one read of the counters adds to them (it shows in the next read, a tick later)."""
    broker.counters()
    time.sleep(SYS_SETTLE_S)
    first = broker.counters()
    time.sleep(SYS_SETTLE_S)
    second = broker.counters()
    return {k: second[f"$SYS/broker/{k}"] - first[f"$SYS/broker/{k}"] for k in COUNTERS}


def _wait_all_connected(broker: Broker, agents: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while broker.counters().get("$SYS/broker/clients/connected", 0) < agents:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {agents} agents connected within {timeout} s")
        time.sleep(1)


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    agents = int(os.environ.get("BENCH_FLEET", "3" if smoke else "50"))
    if smoke:
        figures = fleet(agents, idle_s=4, slices=1, deliveries=2)
    else:
        idle_s = max(float(os.environ.get("BENCH_FLEET_IDLE_S", "120")), TELEMETRY_S)
        # a slice shorter than the telemetry period would hold one report or none: each slice
        # spans whole periods, so every slice sees the same periodic traffic
        figures = fleet(agents, idle_s=idle_s, slices=max(1, int(idle_s // TELEMETRY_S)),
                        deliveries=5)
    for figure in figures:
        if figure.unit == "ms":  # the rush's round trips: the same floor as one locker's
            figure.floor = floors.round_trip()
    return figures
