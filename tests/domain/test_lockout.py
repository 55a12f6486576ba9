"""The code-entry lockout on its own: per-input delays, the locker-wide bucket, persistence.

Time is service-clock seconds (floats), as the service feeds it.
"""

from __future__ import annotations

import math

from locker_agent.domain.lockout import CodeLockout, LockoutPolicy

T0 = 5_000.0
POLICY = LockoutPolicy(free_failures=3, first_delay_s=30, max_delay_s=900,
                       locker_burst=5, locker_per_hour=60, input_quiet_s=3600)


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
    assert not lockout.locker_locked(T0 + 60)


def test_a_quiet_input_starts_afresh_but_not_while_it_still_waits() -> None:
    lockout = CodeLockout(POLICY)
    for n in range(10):
        lockout.failed("keypad", T0 + n)
    assert lockout.wait_for("keypad", T0 + 10) > 800
    assert lockout.consecutive_failures("keypad") == 10
    later = T0 + 9 + 3600
    assert lockout.wait_for("keypad", later) == 0
    lockout.failed("keypad", later)
    assert lockout.consecutive_failures("keypad") == 1


def test_a_restored_clock_reading_behind_the_saved_state_refills_nothing() -> None:
    lockout = CodeLockout(POLICY)
    for _ in range(5):
        lockout.failed("kiosk", T0)
    restored = CodeLockout.restore(POLICY, lockout.snapshot())
    assert restored.locker_locked(T0 - 60)  # a power cut lost a minute of clock
    assert restored.locker_locked(T0 + 30)
    assert not restored.locker_locked(T0 + 60)


def test_the_state_survives_a_snapshot_and_damage_starts_empty() -> None:
    lockout = CodeLockout(POLICY)
    for _ in range(4):
        lockout.failed("keypad", T0)
    restored = CodeLockout.restore(POLICY, lockout.snapshot())
    assert restored.wait_for("keypad", T0) == lockout.wait_for("keypad", T0) == 30
    assert restored.tokens == lockout.tokens
    damaged_states: list[dict[str, object]] = [
        {"tokens": "lots"},
        {"tokens": math.nan},
        {"tokens": math.inf},
        {"tokens": 3, "inputs": {"keypad": {"consecutive_failures": 4,
                                            "blocked_until": "2026-01-01T00:00:00"}}},
        {"inputs": {"keypad": {}}},
        {"damaged": True},
    ]
    for damaged in damaged_states:
        assert CodeLockout.restore(POLICY, damaged).locker_locked(T0), damaged
    assert not CodeLockout.restore(POLICY, None).locker_locked(T0)
