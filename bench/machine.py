"""The machine a run was measured on."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import psutil


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        for key in ("model name", "hardware", "model"):  # x86, then ARM boards
            for line in lines:
                if line.lower().split(":")[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def describe() -> dict[str, str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{_cpu_model()} ({platform.machine()})",
        "cores": str(os.cpu_count()),
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": f"{_os_name()}, kernel {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start (1, 5, 15 min)": load,
    }
