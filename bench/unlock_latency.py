"""Unlock latency: a code submitted through ``LockerService.submit_code`` → lock energised.

In-process, the way the keypad and the scanner reach the service, on the simulated backend
and on the gpio backend over gpiozero's ``MockFactory``; SQLite at synchronous=FULL as always.
"""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
from pathlib import Path

from bench.figures import Figure, Target
from bench.lockers import write_locker_config
from bench.world import pickup_latencies
from locker_agent.config import load_config
from locker_agent.daemon import build_agent

TARGET = Target("p99 ≤ 10 ms", "p99", 10.0)


async def _measure(config: Path, samples: int) -> list[float]:
    agent = build_agent(load_config(config), cloud=False)
    await agent.start()
    try:
        return await pickup_latencies(agent, samples)
    finally:
        await agent.stop()


def measure_backend(backend: str, samples: int, compartments: int = 24) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-unlock-") as tmp:
        config = write_locker_config(
            Path(tmp, "locker.toml"), locker_id=f"bench-{backend}", state_dir=Path(tmp, "state"),
            backend=backend, compartments=compartments,
        )
        return asyncio.run(_measure(config, samples))


def run(*, smoke: bool) -> list[Figure]:
    samples = 30 if smoke else 300
    figures = []
    for backend, label in (("simulated", "simulated"), ("gpio", "gpio, gpiozero MockFactory")):
        latencies = measure_backend(backend, samples)
        figures.append(Figure(
            f"unlock latency ({label})", "ms", latencies, f"{len(latencies)} pickups",
            TARGET, notes=["code → submit_code → commit (fsync) → relay task → output on"],
        ))
    figures.append(kiosk_figure())
    return figures


def kiosk_figure() -> Figure:
    figure = Figure("unlock latency (kiosk HTTP POST)", "ms", target=TARGET)
    if importlib.util.find_spec("locker_agent.api") is None:
        figure.pending = "the kiosk API (locker_agent/api/) has not landed yet"
    else:
        figure.pending = "locker_agent/api/ exists but this benchmark does not drive it yet"
    return figure
