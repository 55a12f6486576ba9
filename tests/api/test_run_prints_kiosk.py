"""The newcomer's path: `locker-agent run --demo` prints the kiosk URL and demo codes, and a
printed code opens a door through that URL."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.demo_agent import demo_agent


def test_run_demo_prints_a_kiosk_url_where_a_printed_code_opens_a_door(tmp_path: Path) -> None:
    with demo_agent(tmp_path / "state") as demo, httpx.Client(timeout=10) as http:
        assert http.get(demo.kiosk_url).status_code == 200
        outcome = http.post(f"{demo.base_url}/api/kiosk/code", json={"code": demo.codes[0]}).json()
    assert outcome["ok"] is True, outcome
    assert "is opening" in outcome["message"]
