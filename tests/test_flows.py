"""Every flow at the locker end to end: the real agent, a real SQLite file, simulated doors.

Customer pickup (one parcel and several under one code), courier drop-off (with and without a
held compartment, "doesn't fit", "door broken"), returns and their collection, expiry and
reclaim, lapsed reservations, signed QR tokens, and the code-entry lockout.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from locker_agent.app.code_gate import Namespace
from locker_agent.app.courier_desk import CourierDesk
from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.config import load_config
from locker_agent.contract.tokens import sign_courier_token, sign_pickup_token
from locker_agent.domain.errors import DomainError, SessionExpired
from locker_agent.domain.model import AssignmentStatus, CompartmentState, DoorState
from locker_agent.runtime.daemon import Agent, build_agent
from tests.conftest import ConfigWriter

HOUR = 3600.0
S = AssignmentStatus
KEY = Ed25519PrivateKey.generate()
COURIER_CODE = "C0URIER-2024"


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[Agent]:
    agent = build_agent(load_config(config))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


def with_token_key(config: Path) -> Path:
    raw = KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    config.write_text(
        config.read_text().replace(
            "[[compartments]]",
            f'[tokens]\npublic_keys = ["{base64.b64encode(raw).decode()}"]\n\n[[compartments]]',
            1,
        )
    )
    return config


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Site:
    """The agent plus the hands of the people at the locker."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.service = agent.service
        assert agent.simulator is not None and agent.courier_desk is not None
        self.doors = agent.simulator
        self.desk: CourierDesk = agent.courier_desk

    @property
    def locker(self) -> Any:
        return self.service.locker

    def reserve(self, assignment_id: str, code: str, **kwargs: Any) -> None:
        kwargs.setdefault("size", "S")
        self.service.apply(lambda: self.locker.reserve(
            assignment_id, pickup_code=code, now=self.service.now(), hold_seconds=72 * HOUR,
            reservation_ttl_s=24 * HOUR, **kwargs,
        ))

    def grant_courier(self, courier_id: str = "dhl-7", code: str = COURIER_CODE) -> None:
        self.service.apply(lambda: self.locker.grant_courier(
            courier_id, code=code, expires_at=None, now=self.service.now()))

    async def opened(self, compartment_id: str) -> None:
        await until(lambda: self.locker.compartments[compartment_id].door is DoorState.OPEN)

    async def open_and_close(self, compartment_id: str) -> None:
        await self.opened(compartment_id)
        self.doors.close_door(compartment_id)
        await until(lambda: compartment_id not in self.locker.intents)

    def status(self, assignment_id: str) -> AssignmentStatus | None:
        live = self.locker.assignments.get(assignment_id)
        return live.status if live else self.agent.store.archived_status(assignment_id)

    def events(self, event_type: str) -> list[Any]:
        return [e for e in self.agent.store.all_events() if e.type == event_type]

    async def deposited(self, assignment_id: str, code: str, **kwargs: Any) -> str:
        self.reserve(assignment_id, code, **kwargs)
        self.service.apply(lambda: self.locker.begin_deposit(
            assignment_id, actor="courier:setup", now=self.service.now()))
        compartment = self.locker.assignments[assignment_id].compartment_id
        await self.open_and_close(compartment)
        assert self.status(assignment_id) is S.DEPOSITED
        return str(compartment)

    async def sign_in(self, code: str = COURIER_CODE) -> str:
        outcome = await self.desk.sign_in(CodeEntry("kiosk", code))
        assert outcome.ok and outcome.courier is not None, outcome.message
        return outcome.courier.session_id


@asynccontextmanager
async def site(config: Path) -> AsyncIterator[Site]:
    async with running(config) as agent:
        yield Site(agent)


# ----------------------------------------------------------------------------- customers


def test_one_code_opens_every_compartment_holding_that_customers_parcels(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            first = await s.deposited("p-1", "73190246", customer_ref="cust-1")
            second = await s.deposited("p-2", "73190246", customer_ref="cust-1", size="M")
            assert first != second
            outcome = await s.service.submit_code(CodeEntry("keypad", "73190246"))
            assert outcome.ok and set(outcome.compartments) == {first, second}
            assert "Compartments" in outcome.message
            for compartment in (first, second):  # in turn, under the power budget of one
                await s.open_and_close(compartment)
            assert s.status("p-1") is S.PICKED_UP and s.status("p-2") is S.PICKED_UP
            requested = s.events("unlock_requested")[-2:]
            assert {e.data["source"] for e in requested} == {"keypad"}
            assert {e.data["actor"] for e in requested} == {"customer"}

    run(scenario())


def test_expired_parcel_code_stops_working_and_the_courier_reclaims_it(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            compartment = await s.deposited("p-1", "55120934")
            s.service.tick(73 * HOUR)
            assert s.status("p-1") is S.EXPIRED and s.events("expired")
            refused = await s.service.submit_code(CodeEntry("keypad", "55120934"))
            assert not refused.ok and refused.reason == "expired"
            assert "expired" in refused.message

            s.grant_courier()
            session = await s.sign_in()
            view = s.desk.view(session)
            assert [p.assignment_id for p in view.expired_to_reclaim] == ["p-1"]
            outcome = await s.desk.reclaim_expired(session)
            assert outcome.ok and outcome.compartments == (compartment,)
            await s.open_and_close(compartment)
            assert s.status("p-1") is S.RECLAIMED
            assert s.locker.state_of(compartment) is CompartmentState.FREE
            assert s.desk.view(session).expired_to_reclaim == ()
            nothing = await s.desk.reclaim_expired(session)
            assert not nothing.ok and nothing.reason == "nothing_waiting"

    run(scenario())


def test_a_reservation_no_courier_filled_lapses_and_frees_the_compartment(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.reserve("p-1", "90817263")
            compartment = s.locker.assignments["p-1"].compartment_id
            s.service.tick(25 * HOUR)
            assert s.status("p-1") is S.CANCELLED
            assert s.events("reservation_lapsed")
            assert s.locker.state_of(compartment) is CompartmentState.FREE

    run(scenario())


# ------------------------------------------------------------------------------ couriers


def test_courier_drop_off_lists_what_waits_and_deposits_by_barcode(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.grant_courier()
            s.reserve("p-1", "44120098", barcode="JD0001")
            compartment = s.locker.assignments["p-1"].compartment_id
            session = await s.sign_in()
            view = s.desk.view(session)
            assert view.courier_id == "dhl-7"
            assert [(p.assignment_id, p.barcode) for p in view.to_deposit] == [("p-1", "JD0001")]
            outcome = await s.desk.deposit(session, "JD0001")
            assert outcome.ok and outcome.compartments == (compartment,)
            assert outcome.courier is not None
            assert outcome.courier.open_compartments == (compartment,)
            await s.open_and_close(compartment)
            assert s.status("p-1") is S.DEPOSITED
            assert s.desk.view(session).to_deposit == ()
            deposited = s.events("deposited")[-1]
            assert deposited.data["actor"] == "courier:dhl-7"
            signed_in = s.events("courier_signed_in")[-1]
            assert signed_in.data == {"courier_id": "dhl-7", "source": "kiosk", "via": "code"}
            unknown = await s.desk.deposit(session, "NOPE")
            assert not unknown.ok and unknown.reason == "unknown_assignment"

    run(scenario())


def test_a_parcel_known_without_a_held_compartment_gets_the_smallest_free_fit(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.grant_courier()
            s.reserve("p-1", "31122009", size="M", barcode="JD0002", hold_compartment=False)
            assert s.locker.assignments["p-1"].compartment_id is None
            assert all(s.locker.state_of(c) is CompartmentState.FREE
                       for c in s.locker.compartments)
            session = await s.sign_in()
            outcome = await s.desk.deposit(session, "JD0002")
            assert outcome.ok and outcome.compartments == ("A04",)  # the only M
            await s.open_and_close("A04")
            assert s.status("p-1") is S.DEPOSITED

    run(scenario())


def test_doesnt_fit_opens_the_next_size_up_and_frees_the_first(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.grant_courier()
            s.reserve("p-1", "61724490", barcode="JD0003", size="S")
            first = s.locker.assignments["p-1"].compartment_id
            session = await s.sign_in()
            await s.desk.deposit(session, "JD0003")
            await s.opened(first)
            outcome = await s.desk.report_problem(session, first, "doesnt_fit")
            assert outcome.ok and outcome.compartments == ("A04",), outcome.message
            s.doors.close_door(first)  # the courier shuts the small door: nothing deposited
            await until(lambda: first not in s.locker.intents)
            assert s.status("p-1") is S.RESERVED
            await s.open_and_close("A04")
            assert s.status("p-1") is S.DEPOSITED
            assert s.locker.assignments["p-1"].compartment_id == "A04"
            assert s.locker.state_of(first) is CompartmentState.FREE
            redirected = s.events("deposit_redirected")[-1]
            assert redirected.data["problem"] == "doesnt_fit" and redirected.data["to"] == "A04"

    run(scenario())


def test_door_broken_takes_the_compartment_out_and_opens_the_next_fit(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        # the doors do not spring open by themselves: a broken one simply stays shut
        async with site(write_config(auto_open=False, door_open_timeout=30)) as s:
            s.grant_courier()
            s.reserve("p-1", "80012377", barcode="JD0004", size="S")
            first = s.locker.assignments["p-1"].compartment_id
            session = await s.sign_in()
            await s.desk.deposit(session, "JD0004")
            await until(lambda: any(c == first for c, _ in s.doors.pulses))
            outcome = await s.desk.report_problem(session, first, "door_broken")
            assert outcome.ok, outcome.message
            (second,) = outcome.compartments
            assert second != first and s.locker.compartments[second].size == "S"
            assert not s.locker.compartments[first].in_service
            # its unlock stays on record, for nobody: a late opening is no forced door
            assert s.locker.intents[first].assignment_ids == frozenset()
            await until(lambda: any(c == second for c, _ in s.doors.pulses))
            s.doors.open_door(second)
            await s.open_and_close(second)
            assert s.status("p-1") is S.DEPOSITED

    run(scenario())


def test_nothing_larger_free_leaves_the_parcel_with_the_courier(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.grant_courier()
            s.reserve("p-1", "70012399", barcode="JD0005", size="XL")
            session = await s.sign_in()
            await s.desk.deposit(session, "JD0005")
            await s.opened("A06")
            outcome = await s.desk.report_problem(session, "A06", "doesnt_fit")
            assert not outcome.ok and outcome.reason == "no_compartment"
            s.doors.close_door("A06")
            await until(lambda: "A06" not in s.locker.intents)
            assert s.status("p-1") is S.RESERVED
            assert s.locker.assignments["p-1"].compartment_id is None
            assert s.desk.view(session).to_deposit[0].assignment_id == "p-1"

    run(scenario())


def test_returns_deposited_by_the_customer_are_collected_by_the_courier(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.service.apply(lambda: s.locker.announce_return(
                "r-1", size="M", return_code="RT-551203", now=s.service.now(), ttl_s=HOUR))
            outcome = await s.service.submit_code(CodeEntry("scanner", "RT-551203"))
            assert outcome.ok and outcome.compartments == ("A04",)
            await s.open_and_close("A04")
            assert s.status("r-1") is S.DEPOSITED and s.events("return_deposited")

            s.grant_courier()
            session = await s.sign_in()
            assert [p.assignment_id for p in s.desk.view(session).returns_to_collect] == ["r-1"]
            collect = await s.desk.collect_returns(session)
            assert collect.ok and collect.compartments == ("A04",)
            await s.open_and_close("A04")
            assert s.status("r-1") is S.COLLECTED
            assert s.events("return_collected")[-1].data["actor"] == "courier:dhl-7"

    run(scenario())


def test_courier_sessions_end_when_idle_and_a_wrong_courier_code_counts(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config(policies={"courier_session_idle_s": 0.3})) as s:
            s.grant_courier()
            session = await s.sign_in()
            await asyncio.sleep(0.4)
            with pytest.raises(SessionExpired):
                s.desk.view(session)
            with pytest.raises(SessionExpired):
                await s.desk.collect_returns("made-up")
            wrong = await s.desk.sign_in(CodeEntry("kiosk", "WRONG-CODE-1"))
            assert not wrong.ok and wrong.reason == "unknown"
            refused = s.events("code_refused")[-1]
            assert refused.data == {"namespace": "courier", "source": "kiosk",
                                    "reason": "unknown"}
            # a customer's code is not a courier code
            await s.deposited("p-1", "12120098")
            as_courier = await s.desk.sign_in(CodeEntry("kiosk", "12120098"))
            assert not as_courier.ok

    run(scenario())


# --------------------------------------------------------------------------------- tokens


def test_a_signed_pickup_token_opens_once_and_forgeries_are_refused(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(with_token_key(write_config())) as s:
            compartment = await s.deposited("p-1", "27365510")
            now = s.service.now()
            token = sign_pickup_token(KEY, locker_id="test-locker", assignment_id="p-1",
                                      expires_at=now + timedelta(hours=1))
            other_key = Ed25519PrivateKey.generate()
            forged = sign_pickup_token(other_key, locker_id="test-locker", assignment_id="p-1",
                                       expires_at=now + timedelta(hours=1))
            elsewhere = sign_pickup_token(KEY, locker_id="other-locker", assignment_id="p-1",
                                          expires_at=now + timedelta(hours=1))
            stale = sign_pickup_token(KEY, locker_id="test-locker", assignment_id="p-1",
                                      expires_at=now - timedelta(hours=1))
            for text, reason in ((forged, "token_bad_signature"),
                                 (elsewhere, "token_wrong_locker"),
                                 (stale, "token_expired")):
                refused = await s.service.submit_code(CodeEntry("scanner", text))
                assert not refused.ok and refused.reason == reason, refused
            outcome = await s.service.submit_code(CodeEntry("scanner", token))
            assert outcome.ok and outcome.compartments == (compartment,)
            assert s.events("unlock_requested")[-1].data["reason"] == "signed_token"
            await s.opened(compartment)
            replay = await s.service.submit_code(CodeEntry("scanner", token))
            assert not replay.ok and replay.reason == "token_replayed"
            await s.open_and_close(compartment)
            assert s.status("p-1") is S.PICKED_UP
            # tokens cannot be guessed: refusals never lock the keypad out
            assert s.service.gate.consecutive_failures(Namespace.CUSTOMER, "scanner") == 0

    run(scenario())


def test_a_replayed_token_stays_refused_after_a_restart(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        config = with_token_key(write_config())
        async with site(config) as s:
            await s.deposited("p-1", "27365511", customer_ref="cust-9")
            await s.deposited("p-2", "27365511", customer_ref="cust-9", size="M")
            token = sign_pickup_token(KEY, locker_id="test-locker", assignment_id="p-1",
                                      expires_at=s.service.now() + timedelta(hours=1))
            outcome = await s.service.submit_code(CodeEntry("scanner", token))
            assert outcome.ok
            (compartment,) = outcome.compartments
            await s.opened(compartment)
            # the door never closes before the power cut: the intent is settled at start
        async with site(config) as s:
            replay = await s.service.submit_code(CodeEntry("scanner", token))
            assert not replay.ok and replay.reason == "token_replayed"

    run(scenario())


def test_a_signed_courier_token_starts_a_session(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(with_token_key(write_config())) as s:
            now = s.service.now()
            token = sign_courier_token(KEY, courier_id="ups-3", lockers=["test-locker", "x-2"],
                                       not_before=now - timedelta(minutes=1),
                                       expires_at=now + timedelta(hours=8))
            at_customer_screen = await s.service.submit_code(CodeEntry("scanner", token))
            assert not at_customer_screen.ok and at_customer_screen.reason == "courier_token"
            session = await s.sign_in(token)
            assert s.desk.view(session).courier_id == "ups-3"
            assert s.events("courier_signed_in")[-1].data["via"] == "token"
            too_long = sign_courier_token(KEY, courier_id="ups-3", lockers=["test-locker"],
                                          not_before=now, expires_at=now + timedelta(days=3))
            refused = await s.desk.sign_in(CodeEntry("scanner", too_long))
            assert not refused.ok and refused.reason == "token_too_long_lived"

    run(scenario())


# -------------------------------------------------------------------------------- lockout


def test_wrong_codes_lock_the_input_out_even_for_the_right_code_and_survive_a_restart(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        config = write_config()
        async with site(config) as s:
            await s.deposited("p-1", "48100271")
            for attempt in range(2):  # a customer who mistypes twice is never held up
                wrong = await s.service.submit_code(CodeEntry("keypad", f"4810027{attempt + 3}"))
                assert not wrong.ok and wrong.retry_after_s is None
            right = await s.service.submit_code(CodeEntry("keypad", "48100271"))
            assert right.ok
            await s.open_and_close(right.compartments[0])

            await s.deposited("p-2", "99887766")
            for attempt in range(3):
                wrong = await s.service.submit_code(CodeEntry("keypad", f"1111222{attempt}"))
                assert wrong.retry_after_s is None
            fourth = await s.service.submit_code(CodeEntry("keypad", "11112229"))
            assert fourth.retry_after_s is not None and fourth.retry_after_s > 0
            assert "try again" in fourth.message
            locked = await s.service.submit_code(CodeEntry("keypad", "99887766"))
            assert not locked.ok and locked.reason == "locked_out"
            lockout = s.events("code_lockout")[-1]
            assert lockout.data["scope"] == "input" and lockout.data["source"] == "keypad"
            # the kiosk is another input: its customer is not held up by the keypad's
            other = await s.service.submit_code(CodeEntry("kiosk", "99887766"))
            assert other.ok
            await s.open_and_close(other.compartments[0])
            await s.deposited("p-3", "55443322")
        async with site(config) as s:
            still = await s.service.submit_code(CodeEntry("keypad", "55443322"))
            assert not still.ok and still.reason == "locked_out"

    run(scenario())


# ------------------------------------------------------------- review: closing the gaps


def test_a_courier_may_only_redirect_their_own_deposit(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.grant_courier("dhl-7", COURIER_CODE)
            s.grant_courier("ups-3", "UPS-C0DE-99")
            s.reserve("p-1", "61724491", barcode="JD0011", size="S")
            first = s.locker.assignments["p-1"].compartment_id
            mine = await s.sign_in()
            other = await s.sign_in("UPS-C0DE-99")
            await s.desk.deposit(mine, "JD0011")
            await s.opened(first)
            refused = await s.desk.report_problem(other, first, "doesnt_fit")
            assert not refused.ok and refused.reason == "not_your_door"
            assert s.locker.assignments["p-1"].compartment_id == first

    run(scenario())


def test_revoking_a_courier_ends_their_session_and_one_session_per_courier(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.grant_courier()
            first = await s.sign_in()
            second = await s.sign_in()
            with pytest.raises(SessionExpired):
                s.desk.view(first)  # the newer sign-in replaced it
            assert s.desk.view(second).courier_id == "dhl-7"
            s.service.apply(lambda: s.locker.revoke_courier("dhl-7", now=s.service.now()))
            with pytest.raises(SessionExpired):
                s.desk.view(second)

    run(scenario())


def test_junk_tokens_in_courier_mode_cost_couriers_no_tries(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(with_token_key(write_config())) as s:
            s.grant_courier()
            now = s.service.now()
            forged = sign_courier_token(Ed25519PrivateKey.generate(), courier_id="x",
                                        lockers=["test-locker"], not_before=now,
                                        expires_at=now + timedelta(hours=1))
            for _ in range(25):
                refused = await s.desk.sign_in(CodeEntry("scanner", forged))
                assert not refused.ok and refused.reason == "token_bad_signature"
            assert await s.sign_in()  # the courier bucket (10) was not spent
            # and the refusals were recorded, thinned to one event a second per input
            assert 1 <= len(s.events("code_refused")) <= 3

    run(scenario())


def test_revoke_code_stops_the_signed_token_too(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(with_token_key(write_config())) as s:
            await s.deposited("p-1", "27365512")
            token = sign_pickup_token(KEY, locker_id="test-locker", assignment_id="p-1",
                                      expires_at=s.service.now() + timedelta(hours=1))
            s.service.apply(lambda: s.locker.revoke_codes("p-1", now=s.service.now()))
            refused = await s.service.submit_code(CodeEntry("scanner", token))
            assert not refused.ok and refused.reason == "revoked"

    run(scenario())


def test_a_token_whose_door_never_opened_works_again_then_not_after_the_pickup(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        config = with_token_key(write_config(door_open_timeout=0.3))
        async with site(config) as s:
            compartment = await s.deposited("p-1", "27365513")
            token = sign_pickup_token(KEY, locker_id="test-locker", assignment_id="p-1",
                                      expires_at=s.service.now() + timedelta(hours=1))
            s.doors.jam(compartment)
            assert (await s.service.submit_code(CodeEntry("scanner", token))).ok
            await until(lambda: compartment not in s.locker.intents, timeout=5)
            assert s.events("door_jammed") and s.status("p-1") is S.DEPOSITED
            s.doors.jam(compartment, False)
            s.service.apply(lambda: s.locker.set_compartment_service(
                compartment, in_service=True, reason=None, now=s.service.now()))
            again = await s.service.submit_code(CodeEntry("scanner", token))
            assert again.ok, again.message
            await s.open_and_close(compartment)
            assert s.status("p-1") is S.PICKED_UP
            replay = await s.service.submit_code(CodeEntry("scanner", token))
            assert not replay.ok and replay.reason == "token_replayed"

    run(scenario())


def test_a_shared_compartment_is_not_reclaimed_while_a_parcel_in_it_is_collectable(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            compartment = await s.deposited("p-1", "44001122", customer_ref="cust-4")
            s.service.tick(48 * 3600)
            await s.deposited("p-2", "44001122", customer_ref="cust-4",
                              compartment_id=compartment)
            s.service.tick(25 * 3600)  # p-1 expired; p-2 is still within its hold
            assert s.status("p-1") is S.EXPIRED and s.status("p-2") is S.DEPOSITED
            s.grant_courier()
            session = await s.sign_in()
            assert s.desk.view(session).expired_to_reclaim == ()
            nothing = await s.desk.reclaim_expired(session)
            assert not nothing.ok and nothing.reason == "nothing_waiting"
            with pytest.raises(DomainError):
                s.locker.begin_reclaim(compartment, actor="courier:x", now=s.service.now())

    run(scenario())


def test_a_barcode_names_one_waiting_parcel(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        async with site(write_config()) as s:
            s.reserve("p-1", "31000001", barcode="SAME-1")
            with pytest.raises(DomainError) as refused:
                s.reserve("p-2", "31000002", barcode="SAME-1")
            assert refused.value.field == "barcode"

    run(scenario())


def test_revoking_a_courier_stops_their_signed_tokens_and_ends_their_sessions(
    write_config: ConfigWriter, clean_env: None
) -> None:
    async def scenario() -> None:
        config = with_token_key(write_config())
        async with site(config) as s:
            now = s.service.now()
            token = sign_courier_token(KEY, courier_id="ups-3", lockers=["test-locker"],
                                       not_before=now - timedelta(minutes=5),
                                       expires_at=now + timedelta(hours=8))
            session = await s.sign_in(token)
            s.service.apply(lambda: s.locker.revoke_courier("ups-3", now=s.service.now()))
            with pytest.raises(SessionExpired):
                s.desk.view(session)
            refused = await s.desk.sign_in(CodeEntry("scanner", token))
            assert not refused.ok and refused.reason == "revoked"
            fresh = sign_courier_token(KEY, courier_id="ups-3", lockers=["test-locker"],
                                       not_before=s.service.now() + timedelta(seconds=1),
                                       expires_at=now + timedelta(hours=8))
        async with site(config) as s:  # the revocation outlives a restart
            refused = await s.desk.sign_in(CodeEntry("scanner", token))
            assert not refused.ok and refused.reason == "revoked"
            await asyncio.sleep(1.1)  # a pass issued after the revocation works
            assert await s.sign_in(fresh)

    run(scenario())
