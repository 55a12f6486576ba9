"""The machine's floors, measured at the start of every run: what the code is compared with.

Absolute times on a shared VM drift by 2x from day to day; a ratio to what the same machine
did minutes earlier does not. Each floor is the least the hardware and the libraries we build
on allow for one step the locker's figures are made of, with none of our code in it:

* **SQLite commit**: plain ``sqlite3``, WAL, ``synchronous=FULL``, one small row per
  transaction, in a temporary directory like the benchmarks' own databases, the WAL at its
  working size (see ``_grow_wal``).
* **SQLite read**: one indexed point read on the same connection, for the figures that ask
  the database something without writing.
* **MQTT hop**: one QoS 1 PUBLISH from one paho client to another through the same Mosquitto
  the benchmarks start (``bench.broker``), ``TCP_NODELAY`` on both, the receiver's network
  loop on paho's thread and the sender waiting on a ``threading.Event``, as
  ``FleetClient.send`` waits for a reply.
* **HTTP round trip**: a JSON POST from an ``httpx.AsyncClient`` (as the kiosk benchmark
  sends its code) to a minimal asyncio server on loopback answering a small JSON body, both on
  one event loop, keep-alive on.

A floor's value is the median of its samples: medians are what stay put on a loaded machine.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.broker import HOST, Broker
from bench.figures import Figure, Floor
from locker_agent.contract.transport import send_without_delay


@dataclass(frozen=True)
class Floors:
    """The floors of one run, and the composites the figures are compared with."""

    commit: Figure
    commit_cpu: Figure
    read: Figure
    mqtt_hop: Figure
    http: Figure

    @property
    def figures(self) -> list[Figure]:
        return [self.commit, self.commit_cpu, self.read, self.mqtt_hop, self.http]

    def one_commit(self) -> Floor:
        return Floor("1 commit", self.commit.median)

    def commit_cpu_floor(self) -> Floor:
        return Floor("1 plain commit's CPU", self.commit_cpu.median)

    def one_read(self) -> Floor:
        return Floor("1 indexed read", self.read.median)

    def round_trip(self) -> Floor:
        """A command's least possible round trip: in over the broker, one commit, out again."""
        return Floor("2 MQTT hops + 1 commit",
                     2 * self.mqtt_hop.median + self.commit.median)

    def http_commit(self) -> Floor:
        return Floor("1 HTTP round trip + 1 commit", self.http.median + self.commit.median)

    def summary(self) -> str:
        return (f"commit {self.commit.median:.3f} ms, read {self.read.median:.4f} ms, "
                f"MQTT hop {self.mqtt_hop.median:.3f} ms, HTTP {self.http.median:.3f} ms "
                "(medians)")


# ------------------------------------------------------------------------- SQLite


def sqlite_commits(
    samples: int, directory: Path
) -> tuple[list[float], list[float], list[float]]:
    """(wall ms, CPU ms) of ``samples`` one-row commits at synchronous=FULL, and the ms of
    as many indexed point reads of the rows written."""
    connection = sqlite3.connect(directory / "floor.db", isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, at REAL, body TEXT)")
        _grow_wal(connection)
        wall, cpu = [], []
        for index in range(samples + 10):
            started, started_cpu = time.perf_counter(), time.thread_time()
            connection.execute("BEGIN")
            connection.execute("INSERT INTO t (at, body) VALUES (?, ?)",
                               (time.time(), f"row {index}"))
            connection.execute("COMMIT")
            spent_cpu = time.thread_time() - started_cpu
            spent = time.perf_counter() - started
            if index >= 10:  # the first few grow the WAL file
                wall.append(spent * 1000)
                cpu.append(spent_cpu * 1000)
        reads = []
        for index in range(samples):
            started = time.perf_counter()
            connection.execute("SELECT body FROM t WHERE id = ?", (index + 1,)).fetchone()
            reads.append((time.perf_counter() - started) * 1000)
        return wall, cpu, reads
    finally:
        connection.close()


def _grow_wal(connection: sqlite3.Connection, pages: int = 1200) -> None:
    """Bring the WAL file to its working size, then rewind it, as in a locker in service.

    A fresh WAL grows with every commit, and on ext4 each fsync of a grown file also commits
    the file's new size to the journal; once the WAL has wrapped (checkpoints every 1,000
    pages), commits overwrite it in place. The agent's databases in the benchmarks wrap
    within their first few hundred commits.
    """
    connection.execute("BEGIN")
    connection.execute("CREATE TABLE pad (body BLOB)")
    connection.executemany("INSERT INTO pad VALUES (?)", [(bytes(3000),)] * pages)
    connection.execute("COMMIT")
    connection.execute("DROP TABLE pad")
    connection.execute("PRAGMA wal_checkpoint(RESTART)")


# --------------------------------------------------------------------------- MQTT


def _client(name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{name}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_socket_open = lambda _c, _u, sock: send_without_delay(sock)
    return client


def mqtt_hops(broker: Broker, samples: int, timeout: float = 10.0) -> list[float]:
    """Milliseconds from a QoS 1 publish to its arrival at another client, one at a time."""
    topic = "bench/floor"
    arrived = threading.Event()
    subscribed = threading.Event()
    receiver, sender = _client("receiver"), _client("sender")
    receiver.on_message = lambda _c, _u, _m: arrived.set()
    receiver.on_subscribe = lambda *_: subscribed.set()
    receiver.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    times = []
    for client in (receiver, sender):
        client.connect(HOST, broker.port)
        client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise RuntimeError("the floor's receiver was not subscribed in time")
        payload = b'{"id":"00000000-0000-0000-0000-000000000000","ok":true}'
        for index in range(samples + 10):
            arrived.clear()
            started = time.perf_counter()
            sender.publish(topic, payload, qos=1)
            if not arrived.wait(timeout):
                raise RuntimeError("a floor message did not arrive")
            if index >= 10:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        for client in (sender, receiver):
            client.disconnect()
            client.loop_stop()
    return times


# --------------------------------------------------------------------------- HTTP


_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n"
             b"\r\n{\"ok\":true}")


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection; the request body is read and ignored."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            writer.write(_RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _http_round_trips(samples: int) -> list[float]:
    handlers: list[asyncio.Task[None]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await _answer(reader, writer)

    server = await asyncio.start_server(answer, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    times = []
    try:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
            for index in range(samples + 10):
                started = time.perf_counter()
                response = await client.post("/api/kiosk/code", json={"code": "12345678"})
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if index >= 10:  # the first opens the connection
                    times.append(elapsed * 1000)
    finally:
        server.close()
        # the client has closed its connection: each handler ends on the end of its stream
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
    return times


def http_round_trips(samples: int) -> list[float]:
    return asyncio.run(_http_round_trips(samples))


# ---------------------------------------------------------------------------- all


def measure(*, smoke: bool) -> Floors:
    samples = 100 if smoke else 500
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        wall, cpu, reads = sqlite_commits(samples, Path(tmp))
        with Broker(Path(tmp, "broker")) as broker:
            hops = mqtt_hops(broker, samples)
    http = http_round_trips(samples)
    return Floors(
        commit=Figure("floor: SQLite commit (WAL, synchronous=FULL)", "ms", wall,
                      f"{len(wall)} commits",
                      notes=["plain sqlite3, one small row per transaction, fsync each"]),
        commit_cpu=Figure("floor: SQLite commit, CPU", "ms", cpu, f"{len(cpu)} commits",
                          notes=["CPU time of the committing thread for the commits above"]),
        read=Figure("floor: SQLite indexed read", "ms", reads, f"{len(reads)} reads",
                    notes=["plain sqlite3, SELECT by primary key, the same file"]),
        mqtt_hop=Figure("floor: MQTT hop (QoS 1 publish → receive)", "ms", hops,
                        f"{len(hops)} messages",
                        notes=["paho → Mosquitto → paho on loopback, TCP_NODELAY, MQTT 5; "
                               "the receiver on paho's thread, as the cloud client"]),
        http=Figure("floor: HTTP round trip (loopback)", "ms", http, f"{len(http)} requests",
                    notes=["httpx.AsyncClient POST → minimal asyncio server → JSON reply, "
                           "keep-alive, one event loop"]),
    )
