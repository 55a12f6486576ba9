"""The fault run: the broker is SIGKILLed and restarted again and again while the locker emits
10,000 events and answers 1,000 commands. Zero events lost (gaps a crashed broker caused are
filled with ``replay_events``, as a cloud consumer would), zero commands applied twice, and the
agent publishes in seq order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from locker_agent.ctl.client import CtlError
from tests.cloud.harness import AgentThread, Cloud
from tests.conftest import ConfigWriter
from tests.support.mosquitto import MosquittoBroker, mosquitto  # noqa: F401 - fixture

LOCKER = "test-locker"
EVENTS = 10_000
COMMANDS = 1_000
KILLS = 5


def missing_seqs(seen: set[int], last: int) -> list[tuple[int, int]]:
    """Runs of seqs in 1..last not seen, as (from, to) pairs."""
    runs: list[tuple[int, int]] = []
    start = None
    for seq in range(1, last + 1):
        if seq not in seen and start is None:
            start = seq
        elif seq in seen and start is not None:
            runs.append((start, seq - 1))
            start = None
    if start is not None:
        runs.append((start, last))
    return runs


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fault_run(
    tmp_path: Path, write_config: ConfigWriter, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    config = write_config(mqtt={
        "host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5, "max_inflight": 50,
    })
    with Cloud(mosquitto.host, mosquitto.port, LOCKER) as cloud, AgentThread(config) as agent:
        assert agent.agent is not None
        service, store = agent.agent.service, agent.agent.store
        cloud.wait_for(lambda: bool(cloud.on("status")), what="birth")
        baseline = store.last_seq()

        # the locker's own activity: 10,000 events, one commit each, never waiting for the cloud
        async def emit() -> None:
            for n in range(EVENTS):
                in_service = n % 2 == 1
                service.apply(lambda s=in_service: service.locker.set_compartment_service(
                    "A06", in_service=s, reason=None if s else "fault run", now=service.now()))
                if n % 50 == 0:
                    await asyncio.sleep(0)  # let the link and commands run too
        emitter = asyncio.run_coroutine_threadsafe(emit(), agent.loop)

        # the broker dies and comes back, several times
        chaos_done = threading.Event()

        def chaos() -> None:
            for _ in range(KILLS):
                time.sleep(2.0)
                mosquitto.kill()
                time.sleep(0.5)
                mosquitto.start()
            chaos_done.set()
        threading.Thread(target=chaos, daemon=True).start()

        # the cloud: 1,000 commands, each resent with the same id until it is answered
        replies: dict[int, dict[str, Any]] = {}
        resends = 0
        for n in range(COMMANDS):
            name = "assign" if n % 2 == 0 else "cancel"
            args = ({"assignment_id": f"f-{n // 2}", "pickup_code": f"{20000000 + n // 2}",
                     "size": "S"} if name == "assign"
                    else {"assignment_id": f"f-{n // 2}", "reason": "fault run"})
            envelope = cloud.client.envelope(LOCKER, name, args)
            give_up = time.monotonic() + 60
            while n not in replies and time.monotonic() < give_up:
                try:
                    replies[n] = cloud.client.send(LOCKER, name, envelope, timeout=1.5)
                except CtlError:  # the broker is down, or the reply was lost: same id again
                    resends += 1
                    time.sleep(0.1)
            assert n in replies, f"command {n} never answered"
            assert replies[n]["ok"], replies[n]
        emitter.result(timeout=300)
        assert chaos_done.wait(60)

        # every event reaches the cloud; gaps a crashed broker caused are asked for again
        last = store.last_seq()
        assert last - baseline >= EVENTS + COMMANDS
        first_pass_order = [e["seq"] for e in cloud.unique_events()]
        replayed = 0
        for _round in range(10):
            cloud.wait_for(lambda: store.outbox_depth() == 0, timeout=60, what="outbox drained")
            time.sleep(0.5)
            gaps = missing_seqs({e["seq"] for e in cloud.events()}, last)
            if not gaps:
                break
            for start, end in gaps:
                replayed += end - start + 1
                assert cloud.command("replay_events", {"from_seq": start, "to_seq": end},
                                     timeout=10)["ok"]
        events = cloud.unique_events()
        assert missing_seqs({e["seq"] for e in events}, last) == [], "events were lost"

    # one id per seq, whatever the number of copies
    ids_per_seq: dict[int, set[str]] = {}
    for event in cloud.events():
        ids_per_seq.setdefault(event["seq"], set()).add(event["id"])
    assert all(len(ids) == 1 for ids in ids_per_seq.values())
    # each command applied exactly once
    applied = Counter((e["type"], e["assignment_id"]) for e in events
                      if e["type"] in ("reserved", "cancelled"))
    assert len(applied) == COMMANDS and set(applied.values()) == {1}
    # published in seq order: what arrived before any replay was asked for is increasing
    assert first_pass_order == sorted(first_pass_order)
    print(f"fault run: {last} events, {COMMANDS} commands, {resends} command resends, "
          f"{len(cloud.events()) - len(events)} duplicate deliveries, {replayed} replayed")
