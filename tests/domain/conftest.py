"""Hypothesis profiles for the domain tests.

``ci`` (500 examples, no deadline, 40 steps per stateful run) is loaded when ``CI`` is set or
``HYPOTHESIS_PROFILE=ci``; ``dev`` (100 examples) otherwise. ``ci`` builds on Hypothesis' own
built-in CI profile (derandomized, no example database), so CI runs are reproducible.
"""

from __future__ import annotations

import os

from hypothesis import settings


def _builtin_ci_profile() -> settings | None:
    try:
        return settings.get_profile("ci")
    except Exception:  # older Hypothesis has no built-in "ci" profile
        return None


def _env_says_ci() -> bool:
    if os.environ.get("HYPOTHESIS_PROFILE") == "ci":
        return True
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


settings.register_profile(
    "ci",
    parent=_builtin_ci_profile(),
    max_examples=500,
    deadline=None,
    stateful_step_count=40,
)
settings.register_profile("dev", max_examples=100)
settings.load_profile("ci" if _env_says_ci() else "dev")
