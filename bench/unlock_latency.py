"""Unlock latency: a code submitted through ``LockerService.submit_code`` → lock energised.

In-process, the way the keypad and the scanner reach the service, on the simulated backend
and on the gpio backend over gpiozero's ``MockFactory``; SQLite at synchronous=FULL as always.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.figures import Figure, Target
from bench.lockers import write_locker_config
from bench.world import Pickup, kiosk_pickup, pickup_latencies, timed_pickup
from locker_agent.config import load_config
from locker_agent.runtime.daemon import build_agent

TARGET = Target("p99 ≤ 10 ms", "p99", 10.0)


async def _measure(config: Path, samples: int, pickup: Pickup) -> list[float]:
    agent = build_agent(load_config(config), cloud=False)
    await agent.start()
    try:
        return await pickup_latencies(agent, samples, pickup)
    finally:
        await agent.stop()


def measure_backend(
    backend: str, samples: int, *, compartments: int = 24, kiosk: bool = False
) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-unlock-") as tmp:
        config = write_locker_config(
            Path(tmp, "locker.toml"), locker_id=f"bench-{backend}", state_dir=Path(tmp, "state"),
            backend=backend, compartments=compartments, api=kiosk,
        )
        return asyncio.run(_measure(config, samples, kiosk_pickup if kiosk else timed_pickup))


def run(*, smoke: bool) -> list[Figure]:
    samples = 15 if smoke else 200
    figures = []
    for backend, label in (("simulated", "simulated"), ("gpio", "gpio, gpiozero MockFactory")):
        latencies = measure_backend(backend, samples)
        figures.append(Figure(
            f"unlock latency ({label})", "ms", latencies, f"{len(latencies)} pickups",
            TARGET, notes=["code → submit_code → commit (fsync) → relay task → output on"],
        ))
    latencies = measure_backend("simulated", samples, kiosk=True)
    figures.append(Figure(
        "unlock latency (kiosk HTTP POST, simulated)", "ms", latencies,
        f"{len(latencies)} pickups", TARGET,
        notes=["POST /api/kiosk/code over TCP to the agent's uvicorn → output on"],
    ))
    return figures
