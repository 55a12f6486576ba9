"""Benchmarks of locker-agent: measured figures, not timed tests (``python -m bench``).

Each module measures one figure of issue 8 and returns :class:`bench.figures.Figure` rows;
:mod:`bench.run` runs them all, prints a table and writes ``docs/benchmarks.md``.
"""
