"""Run every benchmark, print the table, write the report (``python -m bench [--smoke]``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    daemon_figures,
    fleet,
    floors,
    imports,
    outbox_drain,
    round_trip,
    scale,
    store_commit,
    under_fire,
    unlock_latency,
)
from bench.figures import Figure
from bench.floors import Floors
from bench.machine import describe
from bench.report import render_markdown, render_table

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS: dict[str, Callable[..., list[Figure]]] = {
    # each is called as benchmark(smoke=..., floors=...), floors measured first in the run
    "unlock": unlock_latency.run,
    "commit": store_commit.run,
    "round_trip": round_trip.run,
    "drain": outbox_drain.run,
    "daemon": daemon_figures.run,
    "imports": imports.run,
    "scale": scale.run,
    "fleet": fleet.run,
    "under_fire": under_fire.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="a quick run (CI): few samples, written to build/, not docs/")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--out", type=Path, default=None, help="where to write the report")
    args = parser.parse_args(argv)
    out = args.out or (REPO / "build" / "benchmarks-smoke.md" if args.smoke
                       else REPO / "docs" / "benchmarks.md")
    machine = describe()
    print("-- floors", file=sys.stderr, flush=True)
    started = time.monotonic()
    measured: Floors = floors.measure(smoke=args.smoke)
    figures: list[Figure] = list(measured.figures)
    timings: dict[str, float] = {"floors": time.monotonic() - started}
    for name, benchmark in BENCHMARKS.items():
        if args.only is not None and name not in args.only:
            continue
        print(f"-- {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            figures.extend(benchmark(smoke=args.smoke, floors=measured))
        except Exception as exc:
            traceback.print_exc()
            figures.append(Figure(name, "", failed=f"{type(exc).__name__}: {exc}"))
        timings[name] = time.monotonic() - started
    machine["load average at end (1, 5, 15 min)"] = ", ".join(
        f"{x:.2f}" for x in os.getloadavg())
    machine["floors at start (used for every ratio)"] = measured.summary()
    machine["floors again at the end (drift over the run)"] = floors.measure(
        smoke=True).summary()
    machine["run"] = ("smoke (few samples: a check that the benchmarks still run, not figures)"
                      if args.smoke else "full") + "; " + ", ".join(
        f"{k} {v:.0f} s" for k, v in timings.items())
    print(render_table(figures))
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = out.read_text() if out.exists() else ""
    out.write_text(render_markdown(figures, machine, existing))
    print(f"written: {out}")
    return 1 if any(f.failed for f in figures) else 0
