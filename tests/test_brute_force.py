"""A simulated attacker against the lockout, over simulated time (docs/security.md).

The claim: with the default policies, an attacker at the locker — using every input at once,
as fast as the locker lets them — expects to need more than a year to hit any live code of a
full locker, while a customer who mistypes twice is never held up.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from locker_agent.config import Policies
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.errors import InvalidCode
from locker_agent.domain.lockout import CodeLockout, LockoutPolicy
from locker_agent.domain.model import Compartment, CredentialKind
from locker_agent.runtime.policies import lockout_policies

YEAR = timedelta(days=365)
START = datetime(2026, 1, 1, tzinfo=UTC)
"""Wall-clock time, for the real locker's codes; the lockout runs on service seconds."""
INPUTS = ("keypad", "scanner", "kiosk", "kiosk_scan")
"""Every input a person at the locker can enter a code on."""
YEAR_S = YEAR.total_seconds()
CODE_SPACE = 10**8
"""8 digits: what the keypad can type at the default min_code_length."""
FULL_LOCKER_LIVE_CODES = 400
"""200 compartments each holding a parcel under its own code, plus 200 announced returns:
more live codes than a 200-compartment locker can have at once in practice."""


def attack(policy: LockoutPolicy, duration: timedelta) -> int:
    """Codes an attacker gets checked in ``duration``, trying each input as soon as allowed."""
    lockout = CodeLockout(policy)
    now, end, checked = 0.0, duration.total_seconds(), 0
    while now < end:
        waits = {source: lockout.wait_for(source, now) for source in INPUTS}
        source = min(waits, key=lambda s: waits[s])
        if waits[source] > 0:
            now += waits[source]
            continue
        lockout.failed(source, now)  # every guess misses; a hit ends the attack anyway
        checked += 1
        now += 2  # typing eight digits and Enter
    return checked


def test_an_attacker_expects_more_than_a_year_to_open_any_compartment() -> None:
    customer, _ = lockout_policies(Policies())
    checked = attack(customer, YEAR)
    assert checked <= customer.guesses_per_year()
    expected_hits_per_year = checked * FULL_LOCKER_LIVE_CODES / CODE_SPACE
    assert expected_hits_per_year < 1, (
        f"{checked} guesses a year find {expected_hits_per_year:.2f} codes of a full locker"
    )


def test_the_locker_wide_limit_binds_however_many_inputs_there_are() -> None:
    customer, _ = lockout_policies(Policies())
    one_day = attack(customer, timedelta(days=1))
    assert one_day <= customer.locker_burst + customer.locker_per_hour * 24 + 1
    # with no per-input delay at all, the bucket alone still holds the yearly bound
    bucket_only = LockoutPolicy(free_failures=10**6, locker_burst=customer.locker_burst,
                                locker_per_hour=customer.locker_per_hour)
    assert attack(bucket_only, YEAR) * FULL_LOCKER_LIVE_CODES / CODE_SPACE < 1


def test_courier_codes_have_their_own_stricter_limit() -> None:
    _, courier = lockout_policies(Policies())
    checked = attack(courier, YEAR)  # also: an empty bucket refills to a whole token
    assert checked <= courier.guesses_per_year()
    assert checked * 100 / CODE_SPACE < 0.1  # a hundred couriers' codes: decades


def test_a_lower_min_code_length_would_break_the_bound_which_is_why_it_is_8() -> None:
    customer, _ = lockout_policies(Policies())
    checked = attack(customer, YEAR)
    assert checked * FULL_LOCKER_LIVE_CODES / 10**6 > 1  # 6 digits: found within a year


def test_a_customer_who_mistypes_twice_is_never_held_up() -> None:
    customer, courier = lockout_policies(Policies())
    for policy in (customer, courier):
        lockout = CodeLockout(policy)
        now = 0.0
        for _ in range(2):
            lockout.failed("keypad", now)
            now += 5
            assert lockout.wait_for("keypad", now) == 0
        lockout.succeeded("keypad")
        assert lockout.wait_for("keypad", now) == 0


def test_a_real_locker_full_of_codes_survives_a_week_of_guessing() -> None:
    """The same attacker, each guess checked against a locker holding 200 live codes."""
    from locker_agent.domain.locker import Locker

    rng = random.Random(20261202)
    compartments = [Compartment(f"C{i:03d}", "M") for i in range(200)]
    locker = Locker("brute", compartments, CodeHasher(b"k" * 32), min_code_length=8)
    codes = set()
    for i, compartment in enumerate(compartments):
        code = f"{rng.randrange(CODE_SPACE):08d}"
        codes.add(code)
        locker.reserve(f"p{i}", pickup_code=code, now=START, hold_seconds=YEAR.total_seconds(),
                       reservation_ttl_s=3600, compartment_id=compartment.id)
        locker.begin_deposit(f"p{i}", actor="courier", now=START)
        locker.intents.clear()  # a deposited parcel, without walking each door
        locker.assignments[f"p{i}"].status = locker.assignments[f"p{i}"].status.DEPOSITED
    customer, _ = lockout_policies(Policies())
    lockout = CodeLockout(customer)
    now, end, opened, checked = 0.0, timedelta(days=7).total_seconds(), 0, 0
    while now < end:
        waits = {source: lockout.wait_for(source, now) for source in INPUTS}
        source = min(waits, key=lambda s: waits[s])
        if waits[source] > 0:
            now += waits[source]
            continue
        guess = f"{rng.randrange(CODE_SPACE):08d}"
        checked += 1
        try:
            locker.authenticate(guess, now=START + timedelta(seconds=now),
                                kinds=(CredentialKind.PICKUP,))
            opened += 1
        except InvalidCode:
            lockout.failed(source, now)
        now += 2
    assert checked <= customer.locker_burst + customer.locker_per_hour * 24 * 7 + 1
    assert opened == 0
