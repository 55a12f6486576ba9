"""What importing each dependency costs in RSS: the room lazy imports could win back.

Each module is imported in a fresh interpreter; its cost is the RSS growth over a bare one
(after ``psutil`` itself, which is needed to read it). Modules share what they import, so
the costs do not add up to the whole stack's.
"""

from __future__ import annotations

import subprocess
import sys

from bench.figures import Figure
from bench.floors import Floors

MODULES = (
    ("pydantic", "config, contract"),
    ("sqlalchemy", "store"),
    ("sqlmodel", "store tables"),
    ("paho.mqtt.client", "cloud link"),
    ("cryptography.hazmat.primitives.asymmetric.ed25519", "signed commands"),
    ("gpiozero", "gpio backend only"),
    ("serial", "rs485 backend and scanner only"),
    ("fastapi", "kiosk API only"),
    ("uvicorn", "kiosk API only"),
    ("prometheus_client", "API /metrics only"),
    ("locker_agent.runtime.daemon", "everything the daemon imports at start"),
)

_PROBE = (
    "import psutil, importlib, sys\n"
    "p = psutil.Process()\n"
    "before = p.memory_info().rss\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(p.memory_info().rss - before)\n"
)


def import_cost(module: str) -> float:
    """MB of RSS that importing ``module`` adds to a fresh interpreter."""
    output = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    return int(output.strip()) / 2**20


def daemon_modules() -> set[str]:
    """Top-level packages in sys.modules once the daemon's modules are imported."""
    probe = ("import sys, locker_agent.runtime.daemon\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    return set(output.split())


def run(*, smoke: bool, floors: Floors) -> list[Figure]:
    runs = 1 if smoke else 3
    figures = []
    for module, used_for in MODULES:
        costs = [import_cost(module) for _ in range(runs)]
        figures.append(Figure(f"import {module}", "MB", costs, f"{runs} fresh interpreters",
                              notes=[used_for]))
    loaded = daemon_modules()
    eager = [m for m, _ in MODULES
             if m.split(".")[0] in loaded and m != "locker_agent.runtime.daemon"]
    figures[-1].notes.append("loads " + ", ".join(m.split(".")[0] for m in eager))
    return figures
