"""Unlock latency: a code submitted through ``LockerService.submit_code`` → lock energised.

In-process, the way the keypad and the scanner reach the service, on the simulated backend
and on the gpio backend over gpiozero's ``MockFactory``; SQLite at synchronous=FULL as always.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.figures import Figure, Target
from bench.floors import Floors
from bench.lockers import write_locker_config
from bench.world import Pickup, kiosk_pickup, pickup_latencies, timed_pickup
from locker_agent.config import load_config
from locker_agent.runtime.daemon import build_agent, settle_heap

TARGET = Target.ratio("median", 3)
"""Issue 19: a pickup's code → relay at most 3 commits' time (it commits at least once)."""


async def _measure(config: Path, samples: int, pickup: Pickup) -> list[float]:
    agent = build_agent(load_config(config), cloud=False)
    await agent.start()
    settle_heap()  # as `locker-agent run` does once READY
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


def kiosk_target(in_process: Figure, floors: Floors) -> Target:
    """Issue 19: the kiosk adds no more than HTTP itself: p99 ≤ 2x the in-process p99 + 1 HTTP
    round trip, all from this run."""
    limit = 2 * in_process.p99 + floors.http.median
    return Target(f"p99 ≤ 2x in-process p99 + 1 HTTP floor (= {limit:.3g} ms)", "p99", limit)


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    samples = 15 if smoke else 200
    figures = []
    for backend, label in (("simulated", "simulated"), ("gpio", "gpio, gpiozero MockFactory")):
        latencies = measure_backend(backend, samples)
        figures.append(Figure(
            f"unlock latency ({label})", "ms", latencies, f"{len(latencies)} pickups",
            TARGET, notes=["code → submit_code → commit (fsync) → relay task → output on"],
            floor=floors.one_commit(),
        ))
    latencies = measure_backend("simulated", samples, kiosk=True)
    figures.append(Figure(
        "unlock latency (kiosk HTTP POST, simulated)", "ms", latencies,
        f"{len(latencies)} pickups", kiosk_target(figures[0], floors),
        notes=["POST /api/kiosk/code over TCP to the agent's uvicorn → output on; the target "
               "compares with the in-process (simulated) p99 of this run"],
        floor=floors.http_commit(),
    ))
    return figures
