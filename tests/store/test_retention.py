"""Retention keeps the database bounded: what each rule deletes, what it must keep, and a
year of traffic through the real agent in accelerated time."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event

from locker_agent.app.service import LockerService
from locker_agent.config import ConfigError, RetentionConfig, load_config
from locker_agent.domain.model import AssignmentStatus, CredentialKind, DoorState
from locker_agent.runtime.daemon import Agent, build_agent
from locker_agent.store import InboxRecord, Store
from locker_agent.store.code_guard import CodeGuardStore
from locker_agent.store.retention import Retention, RetentionPolicy, RetentionReport
from tests.conftest import REPO, ConfigWriter

T0 = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
HOLD_S = 72 * 3600.0
TTL_S = 24 * 3600.0


class Clock:
    """The wall clock the service reads, moved by the test."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - T0).total_seconds()


@dataclass
class Rig:
    agent: Agent
    clock: Clock

    @property
    def service(self) -> LockerService:
        return self.agent.service

    @property
    def store(self) -> Store:
        return self.agent.store

    def count(self, table: str, where: str = "1") -> int:
        return int(self.store.execute_sql(f"SELECT count(*) FROM {table} WHERE {where}")[0][0])


@pytest.fixture
def rig(
    write_config: ConfigWriter, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    yield from _rig(write_config, monkeypatch)


def _rig(write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    agent = build_agent(load_config(write_config()))
    clock = Clock()
    # build_agent gives no way to pass a wall clock; the service reads it only through _now
    monkeypatch.setattr(agent.service, "_now", clock)
    # The service is never started (no event loop): doors are driven by hand, and each
    # unlock_requested logs "unlock requested before start" — quiet, there are thousands.
    monkeypatch.setattr(logging.getLogger("locker_agent.app"), "level", logging.ERROR)
    try:
        yield Rig(agent, clock)
    finally:
        agent.store.close()


def reserve(
    rig: Rig, assignment_id: str, code: str, *, customer: str | None = None,
    command_id: str | None = None,
) -> str:
    """Reserve a parcel as the cloud's reserve command would; returns its compartment."""
    service, now = rig.service, rig.clock.now
    locker = service.locker
    inbox = None
    if command_id is not None:
        record = InboxRecord(command_id, "reserve", now, {"ok": True})
        inbox = lambda _events: record  # noqa: E731
    service.apply(
        partial(locker.reserve, assignment_id, pickup_code=code, size="S", now=now,
                hold_seconds=HOLD_S, reservation_ttl_s=TTL_S, customer_ref=customer),
        inbox=inbox,
    )
    compartment = locker.assignments[assignment_id].compartment_id
    assert compartment is not None
    return compartment


def open_and_close(rig: Rig, compartment: str) -> None:
    service, locker = rig.service, rig.service.locker
    for state in (DoorState.OPEN, DoorState.CLOSED):
        service.apply(partial(locker.door_changed, compartment, state, now=rig.clock.now))


def deposit(rig: Rig, assignment_id: str) -> None:
    locker = rig.service.locker
    compartment = locker.assignments[assignment_id].compartment_id
    assert compartment is not None
    rig.service.apply(partial(locker.begin_deposit, assignment_id, actor="courier-1",
                              now=rig.clock.now))
    open_and_close(rig, compartment)


def pick_up(rig: Rig, code: str) -> None:
    service, now = rig.service, rig.clock.now
    locker = service.locker
    credential = locker.authenticate(code, now=now, kinds=(CredentialKind.PICKUP,))
    compartments = {locker.assignments[a].compartment_id for a in credential.assignment_ids
                    if a in locker.assignments}
    service.apply(partial(locker.begin_pickup, credential, now=now))
    for compartment in sorted(c for c in compartments if c):
        open_and_close(rig, compartment)


def deliver(rig: Rig, assignment_id: str, code: str, *, command_id: str | None = None) -> None:
    """One parcel's whole life: reserve, deposit (door open, close), pickup (open, close)."""
    reserve(rig, assignment_id, code, command_id=command_id)
    deposit(rig, assignment_id)
    pick_up(rig, code)


def publish_all(rig: Rig) -> int:
    """Acknowledge every pending event, as the cloud link does once the broker has them."""
    published = 0
    while events := rig.store.pending_events(limit=1000):
        rig.store.mark_published([e.seq for e in events], rig.clock.now)
        published += len(events)
    return published


def status(rig: Rig, assignment_id: str) -> AssignmentStatus | None:
    return rig.store.archived_status(assignment_id)


# --- the rules ---------------------------------------------------------------------------


def test_published_events_go_after_their_days_unpublished_ones_never(rig: Rig) -> None:
    deliver(rig, "old", "11111111")
    publish_all(rig)
    old_seqs = {e.seq for e in rig.store.all_events()}
    rig.clock.now += timedelta(days=10)
    reserve(rig, "unsent", "22222222")  # its events stay unpublished for ever
    unsent = {e.seq for e in rig.store.pending_events()}
    rig.clock.now += timedelta(days=5)
    deliver(rig, "recent", "33333333")
    publish_all(rig)
    # events published only now, created long ago, are kept 14 days from publication
    rig.store.unpublish(min(unsent), max(unsent))
    rig.clock.now += timedelta(days=1)  # "old" was published 16 days ago

    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)

    left = {e.seq for e in rig.store.all_events()}
    assert report.outbox == len(old_seqs)
    assert not left & old_seqs
    assert unsent <= left and rig.store.outbox_depth() == len(unsent)
    assert rig.store.last_seq() == max(left)  # seqs are never reused

    rig.clock.now += timedelta(days=4000)
    Retention(rig.store, RetentionPolicy()).run(rig.clock.now)
    assert {e.seq for e in rig.store.pending_events()} == unsent


def test_audit_rows_go_after_audit_days(rig: Rig) -> None:
    deliver(rig, "old", "11111111")
    old = rig.count("audit")
    rig.clock.now += timedelta(days=30)
    deliver(rig, "recent", "22222222")
    total = rig.count("audit")
    rig.clock.now += timedelta(days=10)

    report = Retention(rig.store, RetentionPolicy(audit_days=35)).run(rig.clock.now)

    assert report.audit == old
    assert rig.count("audit") == total - old
    assert rig.count("audit", "assignment_id = 'old'") == 0
    assert rig.count("audit", "assignment_id = 'recent'") > 0


def test_finished_assignments_go_with_their_dead_codes_and_links(rig: Rig) -> None:
    deliver(rig, "old", "11111111")
    reserve(rig, "waiting", "22222222")  # reserved long ago and never deposited: active
    rig.clock.now += timedelta(days=60)
    deliver(rig, "recent", "33333333")
    rig.clock.now += timedelta(days=40)  # "old" finished 100 days ago, "recent" 40
    assert rig.count("credential") == 3 and rig.count("credential_assignment") == 3

    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)

    assert (report.assignments, report.credentials, report.links) == (1, 1, 1)
    assert status(rig, "old") is None
    assert status(rig, "recent") is AssignmentStatus.PICKED_UP
    assert status(rig, "waiting") is AssignmentStatus.RESERVED
    assert rig.count("credential") == 2 and rig.count("credential_assignment") == 2
    assert rig.count("credential", "live = 1") == 1
    # the kept ones still work, and a recent code is still answered "already used"
    [(waiting_code,)] = rig.store.execute_sql(
        "SELECT credential_id FROM credential_assignment WHERE assignment_id = 'waiting'")
    assert waiting_code in rig.service.locker.credentials
    assert rig.store.dead_code_reason(_digest(rig, "33333333")) == "used"
    assert rig.store.dead_code_reason(_digest(rig, "11111111")) is None
    assert rig.store.quick_check() == []
    assert rig.store.execute_sql("PRAGMA foreign_key_check") == []


def test_a_finished_parcel_sharing_a_live_code_is_kept(rig: Rig) -> None:
    """One customer, one code, two parcels: the first is cancelled, the second still waits."""
    reserve(rig, "first", "44444444", customer="cust-1")
    reserve(rig, "second", "44444444", customer="cust-1")
    rig.service.apply(partial(rig.service.locker.cancel, "first", reason="test",
                              now=rig.clock.now))
    rig.clock.now += timedelta(days=200)

    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)

    assert (report.assignments, report.credentials, report.links) == (0, 0, 0)
    assert status(rig, "first") is AssignmentStatus.CANCELLED
    assert rig.count("credential_assignment") == 2

    # once the second is picked up the code is dead, and both go 90 days later
    deposit(rig, "second")
    pick_up(rig, "44444444")
    rig.clock.now += timedelta(days=91)
    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)
    assert (report.assignments, report.credentials, report.links) == (2, 1, 2)
    assert rig.count("credential") == 0 and rig.count("assignment") == 0


def test_dead_courier_codes_go_live_ones_stay(rig: Rig) -> None:
    service, locker = rig.service, rig.service.locker
    service.apply(partial(locker.grant_courier, "courier-1", code="90909090", expires_at=None,
                          now=rig.clock.now))
    service.apply(partial(locker.grant_courier, "courier-1", code="80808080", expires_at=None,
                          now=rig.clock.now))  # revokes the first
    service.apply(partial(locker.grant_courier, "courier-2", code="70707070", expires_at=None,
                          now=rig.clock.now))
    rig.clock.now += timedelta(days=100)

    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)

    assert report.credentials == 1
    assert rig.count("credential", "kind = 'courier'") == 2
    assert rig.count("credential", "live = 0") == 0


def test_old_inbox_rows_go(rig: Rig) -> None:
    reserve(rig, "p1", "11111111", command_id="cmd-old")
    rig.clock.now += timedelta(days=5)
    reserve(rig, "p2", "22222222", command_id="cmd-recent")
    rig.clock.now += timedelta(days=4)

    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)

    assert report.inbox == 1
    assert rig.store.inbox_reply("cmd-old") is None
    assert rig.store.inbox_reply("cmd-recent") == {"ok": True}


def test_used_tokens_are_forgotten_a_day_after_they_expired(rig: Rig) -> None:
    ledger = CodeGuardStore(rig.store.engine)
    now = rig.clock.now
    assert ledger.use_token("old", expires_at=now + timedelta(hours=1), now=now)
    assert ledger.use_token("late", expires_at=now + timedelta(days=3), now=now)
    assert not ledger.use_token("old", expires_at=now + timedelta(hours=1), now=now)

    rig.clock.now += timedelta(days=2)
    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)

    assert report.used_tokens == 1
    assert not ledger.token_used("old") and ledger.token_used("late")


def test_a_second_run_deletes_nothing_more(rig: Rig) -> None:
    for n in range(3):
        deliver(rig, f"p{n}", f"5555555{n}", command_id=f"cmd-{n}")
    publish_all(rig)
    rig.clock.now += timedelta(days=400)
    first = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)
    second = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)
    assert first.deleted > 0 and second.deleted == 0
    for table in ("outbox", "audit", "assignment", "credential", "credential_assignment",
                  "inbox"):
        assert rig.count(table) == 0, table


# --- giving space back ------------------------------------------------------------------


def _bulk_audit(store: Store, rows: int, at: datetime) -> None:
    stamp = at.isoformat(timespec="microseconds")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO audit (event_id, type, at, payload) "
            "SELECT hex(randomblob(16)), 'filler', ?, hex(randomblob(100)) FROM n",
            (rows, stamp),
        )


def test_vacuum_gives_the_space_back_at_most_once_per_interval(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    _bulk_audit(rig.store, 20_000, T0)
    retention = Retention(rig.store, RetentionPolicy(vacuum_interval_h=24),
                          monotonic=rig.clock.monotonic)
    rig.clock.now += timedelta(days=400)
    caplog.set_level(logging.INFO, "locker_agent.store.retention")

    report = retention.run(rig.clock.now)

    assert report.audit == 20_000 and report.vacuum == "full"
    assert report.bytes_before > 4_000_000
    assert report.bytes_after < report.bytes_before / 10
    assert report.wal_bytes_after == 0  # checkpointed and truncated
    assert rig.store.quick_check() == []
    [line] = [r for r in caplog.records if r.getMessage() == "retention"]
    fields: dict[str, Any] = line.fields  # type: ignore[attr-defined]
    assert fields["audit"] == 20_000 and fields["vacuum"] == "full"
    assert fields["db_bytes_before"] == report.db_bytes_before

    rig.clock.now += timedelta(hours=23)
    assert retention.run(rig.clock.now).vacuum == "not_due"
    rig.clock.now += timedelta(hours=1)
    assert retention.run(rig.clock.now).vacuum == "full"
    # the service carries on after a VACUUM on its own file
    deliver(rig, "after", "12121212")
    assert status(rig, "after") is AssignmentStatus.PICKED_UP


def test_vacuum_is_skipped_with_a_warning_when_the_disk_is_too_full(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    _bulk_audit(rig.store, 5_000, T0)
    size = sum(Retention(rig.store, RetentionPolicy()).file_sizes())
    retention = Retention(rig.store, RetentionPolicy(),
                          disk_usage=lambda _path: SimpleNamespace(free=size))
    rig.clock.now += timedelta(days=400)
    report = retention.run(rig.clock.now)
    assert report.vacuum == "no_room" and report.audit == 5_000
    assert report.db_bytes_after >= report.db_bytes_before  # nothing given back, nothing lost
    assert any(r.levelno == logging.WARNING and "VACUUM" in r.getMessage()
               for r in caplog.records)


def test_incremental_auto_vacuum_is_used_when_the_file_has_it(rig: Rig) -> None:
    raw = rig.store.engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert isinstance(dbapi, sqlite3.Connection)
        dbapi.execute("PRAGMA auto_vacuum = INCREMENTAL")
        dbapi.execute("VACUUM")  # takes effect on an existing file only after a VACUUM
    finally:
        raw.close()
    _bulk_audit(rig.store, 20_000, T0)
    rig.clock.now += timedelta(days=400)
    report = Retention(rig.store, RetentionPolicy()).run(rig.clock.now)
    assert report.vacuum == "incremental"
    assert report.bytes_after < report.bytes_before / 10


def test_vacuum_on_a_sqlalchemy_connection_with_no_transaction_begun_fails() -> None:
    """Why Retention uses the raw DBAPI connection: SQLAlchemy autobegins on the first
    statement, and database.py's "begin" hook then emits BEGIN, so VACUUM would run inside
    a transaction (as it does with the AUTOCOMMIT isolation level too)."""
    import tempfile

    from sqlalchemy.exc import OperationalError

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "x.db")
        try:
            store.migrate()
            with store.engine.connect() as conn, pytest.raises(
                OperationalError, match="within a transaction"
            ):
                conn.exec_driver_sql("VACUUM")
        finally:
            store.close()


# --- configuration -----------------------------------------------------------------------


def test_policy_from_config_and_its_bounds(write_config: ConfigWriter, clean_env: None) -> None:
    path = write_config()
    assert RetentionPolicy.from_config(load_config(path).retention) == RetentionPolicy()
    path.write_text(path.read_text() + "\n[retention]\naudit_days = 30\nvacuum_interval_h = 6\n")
    policy = RetentionPolicy.from_config(load_config(path).retention)
    assert (policy.audit_days, policy.vacuum_interval_h, policy.inbox_days) == (30, 6, 8)
    for key, value in (("audit_days", 0), ("inbox_days", 3651), ("vacuum_interval_h", 721),
                       ("keep_days", 3)):
        bad = path.with_name(f"bad-{key}.toml")
        bad.write_text(path.read_text().replace(
            "[retention]\n", f"[retention]\n{key} = {value}\n"))
        with pytest.raises(ConfigError, match=key):
            load_config(bad)


@pytest.mark.parametrize(
    "name", ["simulated", "example-gpio", "example-rs485", "example-modbus"]
)
def test_shipped_configs_spell_out_the_defaults(name: str, clean_env: None) -> None:
    config = load_config(REPO / "config" / f"{name}.toml")
    assert config.retention == RetentionConfig()
    text = (REPO / "config" / f"{name}.toml").read_text()
    for key in RetentionConfig.model_fields:
        assert f"\n{key} = " in text, key


# --- a year of traffic -------------------------------------------------------------------

PARCELS_PER_DAY = int(os.environ.get("RETENTION_YEAR_PARCELS_PER_DAY", "12"))
"""Parcels a day through the real service. Each parcel is 7 commits of ~1.2 ms of Python
(SQLAlchemy statement building, not I/O: fsync is off), so the 200 a day the locker is sized
for take ~12 minutes for a year: too long for CI, which runs 12 a day (~45 s). Run the full
rate with RETENTION_YEAR_PARCELS_PER_DAY=200 (docs/operations.md has its monthly sizes)."""

YEAR_POLICY = RetentionPolicy(audit_days=60)
"""The shipped windows, but 60 days of audit: with the default 365 the audit table (the
largest) grows for the whole first year, so flatness is only visible after month 12. Every
window here is under three months, so months 4-12 must be flat."""


def _synchronous_off(store: Store) -> None:
    """Every commit's fsync would make this test hours long on a CI disk; durability is not
    what it tests (test_durability does), file size is, and that does not depend on fsync."""

    @event.listens_for(store.engine, "connect")
    def _off(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    store.engine.dispose()  # pooled connections reconnect with it
    assert store.execute_sql("PRAGMA synchronous") == [(0,)]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_year_of_daily_traffic_keeps_the_file_flat(
    write_config: ConfigWriter, clean_env: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for rig in _rig(write_config, monkeypatch):
        _run_a_year(rig, capsys.disabled)


def _run_a_year(rig: Rig, out: Callable[[], Any]) -> None:
    _synchronous_off(rig.store)
    retention = Retention(rig.store, YEAR_POLICY, monotonic=rig.clock.monotonic)
    spacing = timedelta(hours=12) / PARCELS_PER_DAY  # deliveries 08:00-20:00
    monthly: list[tuple[str, int, int]] = []
    reports: list[RetentionReport] = []
    started = time.perf_counter()
    n = 0
    day = T0
    end = T0.replace(year=T0.year + 1)
    while day < end:
        for i in range(PARCELS_PER_DAY):
            rig.clock.now = day + i * spacing
            n += 1
            deliver(rig, f"p{n}", f"{n:08d}", command_id=f"cmd-{n}")
            if i % 50 == 49:
                publish_all(rig)
        publish_all(rig)
        rig.clock.now = day + timedelta(hours=15)  # 23:00, the nightly run
        reports.append(retention.run(rig.clock.now))
        day += timedelta(days=1)
        if day.month != (day - timedelta(days=1)).month:
            db, wal = retention.file_sizes()
            monthly.append(((day - timedelta(days=1)).strftime("%b"), db, wal))
    elapsed = time.perf_counter() - started

    with out():
        print(f"\n{n} parcels in {elapsed:.0f} s ({PARCELS_PER_DAY}/day, {YEAR_POLICY})")
        for month, db, wal in monthly:
            print(f"  {month}: db {db / 1e6:6.2f} MB  wal {wal / 1e6:5.2f} MB")
        slowest = max(r.duration_s for r in reports)
        print(f"  slowest nightly run {slowest:.2f} s, {rig.count('audit')} audit rows, "
              f"{rig.count('assignment')} assignments, {rig.count('outbox')} outbox rows")

    assert n == 365 * PARCELS_PER_DAY
    sizes = [db + wal for _, db, wal in monthly]
    assert len(sizes) == 12
    # every window is under three months: from then on deletes keep pace with inserts
    assert max(sizes[3:]) <= 1.25 * sizes[2], sizes
    assert sizes[11] >= 0.75 * sizes[2], sizes
    # measured ~170 kB per daily parcel (2.1 MB at 12 a day, 34 MB at 200): bound it at 240
    assert sizes[11] < 240_000 * PARCELS_PER_DAY + 1_000_000, sizes
    # what the year left: only the windows' worth, nothing unpublished lost
    assert rig.count("assignment") <= 91 * PARCELS_PER_DAY
    assert rig.count("audit") <= 61 * PARCELS_PER_DAY * 9
    assert rig.count("outbox", "published_at IS NULL") == 0
    assert rig.store.last_seq() == 9 * n
    assert rig.store.quick_check() == []


def _digest(rig: Rig, code: str) -> str:
    return rig.service.locker._hasher.digest(CredentialKind.PICKUP, code)
