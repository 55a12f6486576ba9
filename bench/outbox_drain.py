"""Outbox drain: events queued while the locker had no link → all acknowledged once it has.

The events are committed through ``Store.commit`` (1,000 per transaction, to queue 100,000
in seconds) into the agent's own database while it is not running; then a real agent process
connects to a Mosquitto the bench started. The clock runs from the agent's birth message
(connected) until every event has reached the cloud's subscriber and the agent has marked
every one published (its PUBACK came back). None may be missing and the first copies must
arrive in ``seq`` order.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.broker import Broker
from bench.daemon import DaemonProcess
from bench.figures import Figure, Target
from bench.floors import Floors
from bench.lockers import operator_client, write_locker_config
from locker_agent.config import load_config
from locker_agent.ctl.client import Received
from locker_agent.domain.model import DomainEvent
from locker_agent.runtime.daemon import build_agent

TARGET = Target("≤ 30 s, none lost, order kept", "max", 30.0)
LOCKER = "bench-drain"
BATCH = 1000


def queue_events(config_path: Path, count: int) -> None:
    agent = build_agent(load_config(config_path), cloud=False)
    try:
        for start in range(0, count, BATCH):
            now = datetime.now(UTC)
            events = [
                DomainEvent("door_closed", now, "C001", data={"bench": n})
                for n in range(start, min(count, start + BATCH))
            ]
            agent.store.commit(agent.service.locker, events)
    finally:
        agent.store.close()


def unpublished(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0])


class Recorder:
    """The cloud's consumer: every event's bench number, first copies in arrival order."""

    def __init__(self) -> None:
        self.order: list[int] = []
        self.seen: set[str] = set()
        self.copies = 0
        self.online_at: float | None = None
        self._lock = threading.Lock()

    def on_event(self, message: Received) -> None:
        event = message.json()
        with self._lock:
            self.copies += 1
            if event["id"] in self.seen:
                return
            self.seen.add(event["id"])
            if "bench" in event["data"]:
                self.order.append(int(event["data"]["bench"]))

    def on_status(self, message: Received) -> None:
        if message.json().get("online") and self.online_at is None:
            self.online_at = time.perf_counter()


def drain(count: int, timeout: float = 600.0, max_inflight: int = 20) -> tuple[float, list[str]]:
    """Seconds from connected to all acknowledged, and the problems found (empty if none)."""
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        broker = Broker(Path(tmp, "broker"))
        config_path = write_locker_config(
            Path(tmp, "locker.toml"), locker_id=LOCKER, state_dir=Path(tmp, "state"),
            broker=(broker.host, broker.port),
            mqtt={"max_outbox_events": max(200_000, count), "max_inflight": max_inflight},
        )
        queue_events(config_path, count)
        database = load_config(config_path).database_path
        recorder = Recorder()
        with broker, operator_client(broker.host, broker.port) as cloud:
            cloud.subscribe_all([f"lockers/{LOCKER}/events"], recorder.on_event)
            cloud.subscribe_all([f"lockers/{LOCKER}/status"], recorder.on_status)
            with DaemonProcess(config_path, Path(tmp, "agent")):
                deadline = time.monotonic() + timeout
                while recorder.online_at is None or len(recorder.order) < count \
                        or unpublished(database):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"drain incomplete after {timeout:.0f} s: {len(recorder.order)} "
                            f"of {count} received, {unpublished(database)} unacknowledged")
                    time.sleep(0.05)
                finished = time.perf_counter()
        assert recorder.online_at is not None
        problems = []
        if sorted(recorder.order) != list(range(count)):
            problems.append(f"lost: {count - len(set(recorder.order))} events")
        if recorder.order != sorted(recorder.order):
            problems.append("first copies out of seq order")
        if recorder.copies != len(recorder.seen):
            problems.append(f"{recorder.copies - len(recorder.seen)} duplicates (allowed)")
        return finished - recorder.online_at, problems


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    count = 5_000 if smoke else 100_000
    # the default window of 20 unacknowledged events, and a wider one (mqtt.max_inflight)
    return [_figure(count, inflight) for inflight in ((20,) if smoke else (20, 200))]


def _figure(count: int, max_inflight: int) -> Figure:
    seconds, problems = drain(count, max_inflight=max_inflight)
    figure = Figure(
        f"outbox drain ({count:,} events, max_inflight {max_inflight})", "s", [seconds],
        "1 drain", TARGET,
        notes=[f"{count / seconds:,.0f} events/s; "
               + ("; ".join(problems) if problems else "none lost, order kept, no duplicates")],
    )
    if any(not p.endswith("(allowed)") for p in problems):
        figure.failed = "; ".join(problems)
    return figure
