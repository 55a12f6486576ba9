"""The code-entry lockout on its own: per-input delays, the locker-wide bucket, persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from locker_agent.domain.lockout import CodeLockout, LockoutPolicy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = LockoutPolicy(free_failures=3, first_delay_s=30, max_delay_s=900,
                       locker_burst=5, locker_per_hour=60)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_the_wait_doubles_after_the_free_failures_up_to_the_cap() -> None:
    assert [POLICY.delay_after(n) for n in range(1, 10)] == [
        0, 0, 0, 30, 60, 120, 240, 480, 900,
    ]
    assert POLICY.delay_after(10**6) == 900


def test_a_right_code_clears_its_input_but_not_the_locker_bucket() -> None:
    lockout = CodeLockout(POLICY)
    for _ in range(4):
        lockout.failed("keypad", T0)
    assert lockout.wait_for("keypad", T0) == 30
    assert lockout.wait_for("kiosk", T0) == 0
    assert lockout.succeeded("keypad")
    assert lockout.wait_for("keypad", T0) == 0
    assert lockout.tokens == 1  # four of five spent, none given back


def test_an_empty_bucket_shuts_every_input_until_it_refills() -> None:
    lockout = CodeLockout(POLICY)
    for source in ("keypad", "scanner", "kiosk", "keypad", "scanner"):
        lockout.failed(source, T0)
    assert lockout.locker_locked(T0)
    assert lockout.wait_for("kiosk", T0) == 60  # one token at 60 an hour
    assert not lockout.locker_locked(T0 + seconds(60))


def test_a_clock_set_backwards_refills_nothing() -> None:
    lockout = CodeLockout(POLICY)
    for _ in range(5):
        lockout.failed("kiosk", T0)
    assert lockout.locker_locked(T0 - timedelta(days=30))
    assert lockout.locker_locked(T0 + seconds(30))


def test_the_state_survives_a_snapshot_and_damage_starts_empty() -> None:
    lockout = CodeLockout(POLICY)
    for _ in range(4):
        lockout.failed("keypad", T0)
    restored = CodeLockout.restore(POLICY, lockout.snapshot())
    assert restored.wait_for("keypad", T0) == lockout.wait_for("keypad", T0) == 30
    assert restored.tokens == lockout.tokens
    for damaged in ({"tokens": "lots"}, {"inputs": {"keypad": {}}}, {"damaged": True}):
        assert CodeLockout.restore(POLICY, damaged).locker_locked(T0)
    assert not CodeLockout.restore(POLICY, None).locker_locked(T0)
