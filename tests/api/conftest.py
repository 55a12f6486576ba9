"""A live agent with its API for each test (real SQLite file, simulated hardware, uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.live_agent import LiveAgent, write_locker


@pytest.fixture
def live(tmp_path: Path, clean_env: None) -> Iterator[LiveAgent]:
    with LiveAgent(write_locker(tmp_path)) as agent:
        yield agent


@pytest.fixture
def client(live: LiveAgent) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10) as http:
        yield http
