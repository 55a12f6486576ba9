"""Operators of their own: the operators file, signing in by token, and sessions that end.

The event streams are read over a real socket (uvicorn in a thread, httpx): a stream the
server did not end would leave the read waiting for its 15 s keepalive, past the client's
5 s read timeout, and the test would fail on it.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from locker_agent.ctl.dashboard import operators
from locker_agent.ctl.dashboard.auth import SESSION_COOKIE, Sessions
from locker_agent.ctl.dashboard.operators import Operators, OperatorsFileError
from tests.dashboard.conftest import Dashboard, DashboardFactory, OperatorsFile

Serve = Callable[[FastAPI], str]


# ---------------------------------------------------------------------- the file


def test_the_file_keeps_a_salted_scrypt_hash_never_the_token(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    token = operators.add(path, "ops-anna")
    name, _, secret = token.rpartition(".")
    assert name == "ops-anna" and len(secret) >= 43  # 32 random bytes
    text = path.read_text()
    assert secret not in text and token not in text
    entry = json.loads(text)["operators"]["ops-anna"]
    assert entry["kdf"] == "scrypt" and entry["n"] >= 2**14 and len(entry["salt"]) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the same name again gets a different salt, so the same secret would hash differently
    again = operators.add(tmp_path / "other.json", "ops-anna")
    other = json.loads((tmp_path / "other.json").read_text())["operators"]["ops-anna"]
    assert again != token and other["salt"] != entry["salt"]


def test_a_token_signs_in_only_the_operator_it_was_made_for(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    anna, ben = operators.add(path, "ops-anna"), operators.add(path, "ops-ben")
    registry = Operators(path)
    assert registry.names() == ["ops-anna", "ops-ben"]
    found = registry.verify(anna)
    assert found is not None and found.name == "ops-anna"
    ben_secret = ben.rpartition(".")[2]
    assert registry.verify(f"ops-anna.{ben_secret}") is None  # ben's secret, anna's name
    assert registry.verify(f"ops-ben.{ben_secret}")  # what ben was given
    assert registry.verify("ops-cleo." + ben_secret) is None
    for malformed in ("", ".", "ops-anna.", ".ops-anna", "ops-anna", f"ops-ben.{ben_secret}x",
                      f"ops ben.{ben_secret}", ben + "." * 300):
        assert registry.verify(malformed) is None, malformed
    with pytest.raises(OperatorsFileError, match="already an operator"):
        operators.add(path, "ops-anna")
    with pytest.raises(ValueError, match="not a valid operator name"):
        operators.add(path, "anna smith")


def test_a_broken_or_loose_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    with pytest.raises(OperatorsFileError, match="no such file"):
        Operators(path)
    operators.add(path, "ops-anna")
    good = path.read_text()
    path.chmod(0o622)
    with pytest.raises(OperatorsFileError, match="writable by others"):
        Operators(path)
    path.chmod(0o600)
    for broken, why in (
        ("{", "not JSON"),
        ('{"format": 2, "operators": {}}', "format 1"),
        (good.replace('"n": 16384', '"n": 1048577'), "out of range"),
        (good.replace('"kdf": "scrypt"', '"kdf": "md5"'), "scrypt"),
        (good.replace('"ops-anna"', '"ops anna"'), "not a valid operator name"),
    ):
        path.write_text(broken)
        with pytest.raises(OperatorsFileError, match=why):
            Operators(path)


def test_a_file_broken_while_the_dashboard_runs_lets_nobody_in(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    token = operators.add(path, "ops-anna")
    sessions = Sessions(Operators(path))
    signed = sessions.sign_in(token)
    assert signed is not None and signed[1] == "ops-anna"
    path.write_text("{ half written")
    sessions.operators.refresh()
    assert sessions.operator(signed[0]) is None
    assert sessions.sign_in(token) is None


# ---------------------------------------------------------------------- streams end


@contextmanager
def streaming(client: httpx.Client) -> Iterator[Iterator[str]]:
    """An open ``/api/stream``, read up to its snapshot; yields the rest of its lines."""
    with client.stream("GET", "/api/stream") as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            if line == "event: snapshot":
                next(lines)
                break
        yield lines


def ends_within(lines: Iterator[str], seconds: float) -> float:
    """Read the stream to its end (a read timeout fails the test); how long it took."""
    started = time.monotonic()
    for _ in lines:
        pass
    took = time.monotonic() - started
    assert took < seconds, f"the stream ended only after {took:.1f} s"
    return took


def test_signing_out_ends_every_stream_of_that_session_at_once(
    make_dashboard: DashboardFactory, serve: Serve, token: str, operators_file: OperatorsFile
) -> None:
    dashboard: Dashboard = make_dashboard()
    url = serve(dashboard.app)
    with httpx.Client(base_url=url, timeout=5) as anna, \
            httpx.Client(base_url=url, timeout=5) as ben:
        assert anna.post("/api/session", json={"token": token}).is_success
        assert ben.post("/api/session",
                        json={"token": operators_file.tokens["ops-ben"]}).is_success
        session = anna.cookies[SESSION_COOKIE]
        with streaming(anna) as first, streaming(anna) as second, streaming(ben):
            assert dashboard.app.state.hub.streams(session) == 2
            assert anna.delete("/api/session").is_success
            ends_within(first, 1.0)
            ends_within(second, 1.0)
            assert dashboard.app.state.hub.streams(session) == 0
            # another operator's stream goes on
            assert ben.get("/api/session").json() == {"operator": "ops-ben"}
            assert dashboard.app.state.hub.streams(ben.cookies[SESSION_COOKIE]) == 1
        # the old cookie, kept by someone, opens nothing
        stale = httpx.get(f"{url}/api/stream", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
        assert stale.status_code == 401


def test_an_expired_session_ends_its_stream(
    make_dashboard: DashboardFactory, serve: Serve, token: str
) -> None:
    dashboard = make_dashboard(session_ttl_s=1.0, sweep_interval_s=0.1)
    url = serve(dashboard.app)
    with httpx.Client(base_url=url, timeout=5) as client:
        signed_in = time.monotonic()
        assert client.post("/api/session", json={"token": token}).is_success
        with streaming(client) as lines:
            ends_within(lines, 3.0)
        lived = time.monotonic() - signed_in
        assert lived >= 0.9, f"the stream ended {lived:.2f} s after sign-in, before expiry"
        assert client.get("/api/session").status_code == 401


def test_removing_an_operator_ends_their_sessions_and_a_new_token_replaces_the_old(
    make_dashboard: DashboardFactory, serve: Serve, tmp_path: Path
) -> None:
    path = tmp_path / "operators.json"
    cleo, dan = operators.add(path, "ops-cleo"), operators.add(path, "ops-dan")
    dashboard = make_dashboard(operators_path=path, sweep_interval_s=0.1)
    url = serve(dashboard.app)
    with httpx.Client(base_url=url, timeout=5) as client, \
            httpx.Client(base_url=url, timeout=5) as other:
        assert client.post("/api/session", json={"token": cleo}).is_success
        assert other.post("/api/session", json={"token": dan}).is_success
        with streaming(client) as lines:
            assert operators.remove(path, "ops-cleo")
            ends_within(lines, 2.0)
        assert client.get("/api/session").status_code == 401
        assert client.post("/api/session", json={"token": cleo}).status_code == 401
        assert other.get("/api/session").json() == {"operator": "ops-dan"}

        # a new token for dan: the old one stops working, and so does the session it opened
        fresh = operators.add(path, "ops-dan", replace=True)
        assert client.post("/api/session", json={"token": fresh}).json() == {
            "operator": "ops-dan"}
        assert other.post("/api/session", json={"token": dan}).status_code == 401
        deadline = time.monotonic() + 2
        while other.get("/api/fleet").status_code != 401:
            assert time.monotonic() < deadline, "the old token's session lived on"
            time.sleep(0.05)
        # and an operator added while it runs can sign in at once
        erin = operators.add(path, "ops-erin")
        assert other.post("/api/session", json={"token": erin}).json() == {
            "operator": "ops-erin"}


def test_a_crowd_of_bogus_sign_ins_does_not_stall_a_signed_in_operator(
    make_dashboard: DashboardFactory, serve: Serve, token: str
) -> None:
    # review: each sign-in took a thread of the pool every request uses, and waited there for
    # the one scrypt at a time; 40 of them stalled every operator's page
    dashboard = make_dashboard()
    url = serve(dashboard.app)
    with httpx.Client(base_url=url, timeout=30) as anna:
        assert anna.post("/api/session", json={"token": token}).is_success

        def bogus(n: int) -> int:
            with httpx.Client(base_url=url, timeout=60) as client:
                return client.post("/api/session",
                                   json={"token": f"ops-anna.wrong{n}"}).status_code

        with ThreadPoolExecutor(max_workers=40) as crowd:
            answers = crowd.map(bogus, range(40))
            time.sleep(0.3)  # the crowd is in
            started = time.monotonic()
            assert anna.get("/api/fleet").is_success
            waited = time.monotonic() - started
            codes = list(answers)
        assert waited < 2.0, f"a signed-in page waited {waited:.1f} s behind the crowd"
        assert 429 in codes and set(codes) <= {401, 429}
