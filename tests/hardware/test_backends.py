"""The composition root builds each hardware backend from the config, and the agent runs on it."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import pytest

from locker_agent.app.safety import SafeLocks
from locker_agent.config import load_config
from locker_agent.domain.model import DoorState
from locker_agent.hardware.gpio import GpioLocker
from locker_agent.hardware.rs485 import Rs485Locker
from locker_agent.runtime.daemon import build_agent
from locker_agent.runtime.errors import StartupError
from tests.hardware.kerong_emulator import KerongBus

COMPARTMENTS = """
[[compartments]]
id = "A01"
size = "S"
lock = {lock1}
sensor = {sensor1}

[[compartments]]
id = "A02"
size = "M"
lock = {lock2}
sensor = {sensor2}
"""


GPIO = '[hardware]\nbackend = "gpio"\n\n[hardware.gpio]\npin_factory = "{factory}"\n'


def write(tmp_path: Path, hardware: str, **pins: str) -> Path:
    path = tmp_path / "locker.toml"
    path.write_text(
        f'locker_id = "hw-locker"\nstate_dir = "{tmp_path / "state"}"\n\n{hardware}\n'
        '[mqtt]\nenabled = false\n\n[policies]\nlock_pulse_ms = 50\nunlock_gap_ms = 0\n'
        + COMPARTMENTS.format(**pins)
    )
    return path


def open_compartment(agent: object, compartment_id: str) -> None:
    from locker_agent.runtime.daemon import Agent

    assert isinstance(agent, Agent)
    service = agent.service
    service.apply(partial(service.locker.begin_operator_open, compartment_id, actor="test",
                          reason="backend test", now=service.now()))


def test_the_gpio_backend_runs_on_gpiozero_mock_pins(tmp_path: Path) -> None:
    config = write(tmp_path, GPIO.format(factory="mock"),
                   lock1="17", sensor1="27", lock2="22", sensor2="23")

    async def scenario() -> None:
        agent = build_agent(load_config(config))
        assert isinstance(agent.locks, SafeLocks)
        assert isinstance(agent.locks.driver, GpioLocker)
        await agent.start()
        try:
            open_compartment(agent, "A02")
            for _ in range(100):
                if "unlock_pulsed" in [e.type for e in agent.store.all_events()]:
                    break
                await asyncio.sleep(0.01)
            assert "unlock_pulsed" in [e.type for e in agent.store.all_events()]
            # recorded as the pulse starts; the pulse itself ends on its own
            for _ in range(200):
                if agent.locks.energised() == frozenset():
                    break
                await asyncio.sleep(0.01)
            assert agent.locks.energised() == frozenset()
        finally:
            await agent.stop()

    asyncio.run(scenario())


def test_an_unknown_pin_factory_stops_start_up_clearly(tmp_path: Path) -> None:
    config = write(tmp_path, GPIO.format(factory="nope"),
                   lock1="17", sensor1="27", lock2="22", sensor2="23")
    with pytest.raises(StartupError, match="pin_factory"):
        build_agent(load_config(config))


def test_the_rs485_backend_drives_the_emulated_board(tmp_path: Path) -> None:
    with KerongBus(boards=(0, 1)) as bus:
        config = write(
            tmp_path,
            f'[hardware]\nbackend = "rs485"\n\n[hardware.rs485]\nport = "{bus.port}"\n'
            'poll_interval_s = 0.05\n',
            lock1='"0:1"', sensor1='"0:1"', lock2='"1:3"', sensor2='"1:3"',
        )

        async def scenario() -> None:
            agent = build_agent(load_config(config))
            assert isinstance(agent.locks, SafeLocks)
            assert isinstance(agent.locks.driver, Rs485Locker)
            await agent.start()
            try:
                bus.clear_log()
                open_compartment(agent, "A02")
                for _ in range(200):
                    if agent.service.locker.compartments["A02"].door is DoorState.OPEN:
                        break
                    await asyncio.sleep(0.01)
                # board 1, lock index 2: 02 12 31 03 sum
                unlock = bytes([0x02, 0x12, 0x31, 0x03, (0x02 + 0x12 + 0x31 + 0x03) & 0xFF])
                assert unlock in bus.frames()
                assert agent.service.locker.compartments["A02"].door is DoorState.OPEN
            finally:
                await agent.stop()

        asyncio.run(scenario())


def test_keypad_and_scanner_sections_are_validated_and_built(tmp_path: Path) -> None:
    from locker_agent.config import ConfigError
    from locker_agent.hardware.keypad import MatrixKeypad
    from locker_agent.hardware.scanner import SerialScanner

    gpio = GPIO.format(factory="mock")
    pins = {"lock1": "17", "sensor1": "27", "lock2": "22", "sensor2": "23"}
    bad = write(tmp_path, gpio + '[hardware.keypad]\nlayout = "4x4"\nrows = [5, 6, 13]\n'
                'columns = [19, 26, 5, 12]\nenter_key = "X"\n', **pins)
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    message = str(error.value)
    assert "hardware.keypad.rows" in message and "4 rows" in message
    assert "GPIO 5 used twice" in message
    assert "hardware.keypad.enter_key" in message

    good = write(tmp_path, gpio + '[hardware.keypad]\nrows = [5, 6, 13, 19]\n'
                 'columns = [26, 12, 16]\n\n[hardware.scanner]\nport = "/dev/ttyACM0"\n', **pins)
    agent = build_agent(load_config(good), cloud=False)
    try:
        keypad, scanner = agent.inputs
        assert isinstance(keypad, MatrixKeypad) and keypad.keys == tuple("123456789*0#")
        assert isinstance(agent.locks, SafeLocks) and isinstance(agent.locks.driver, GpioLocker)
        assert keypad.pin_factory is agent.locks.driver.pin_factory  # one set of pins
        assert isinstance(scanner, SerialScanner) and scanner.port == "/dev/ttyACM0"
    finally:
        agent.store.close()


def test_an_idle_kr_cu16_board_reads_all_doors_closed_by_default() -> None:
    # issue 16: the KR-CU16's public notes: an idle board with every door shut answers
    # 02 00 35 ff ff 00 00 03 38, every lock bit set
    from locker_agent.config import Rs485Hardware
    from locker_agent.hardware.kerong import parse_status_reply

    status = parse_status_reply(bytes.fromhex("020035ffff00000338"), board=0)
    default = Rs485Hardware().lock_bit_open_when_set
    assert not any(status.door_open(i, open_when_set=default) for i in range(16))
    shipped = load_config(Path(__file__).resolve().parents[2] / "config/example-rs485.toml")
    assert shipped.hardware.rs485.lock_bit_open_when_set is default is False


def test_hw_test_says_when_the_lock_bits_read_the_wrong_way_round(tmp_path: Path) -> None:
    from locker_agent.ops.commissioning import hw_test

    with KerongBus(boards=(0, 1)) as bus:  # a KR-CU16 as its notes say: set bit = closed
        config = write(
            tmp_path,
            f'[hardware]\nbackend = "rs485"\n\n[hardware.rs485]\nport = "{bus.port}"\n'
            'poll_interval_s = 0.05\nlock_bit_open_when_set = true\n',  # the wrong reading
            lock1='"0:1"', sensor1='"0:1"', lock2='"1:3"', sensor2='"1:3"',
        )
        said: list[str] = []

        async def scenario() -> None:
            agent = build_agent(load_config(config))
            await agent.start()
            try:
                for _ in range(200):
                    if all(c.door is DoorState.OPEN
                           for c in agent.service.locker.compartments.values()):
                        break
                    await asyncio.sleep(0.01)
                bus.clear_log()
                await hw_test(agent, open_timeout_s=0.2, close_timeout_s=0.2, out=said.append)
                # no unlock was sent to doors that only looked open
                assert not [f for f in bus.frames() if len(f) > 2 and f[2] == 0x31]
            finally:
                await agent.stop()

        asyncio.run(scenario())
    assert any("hardware.rs485.lock_bit_open_when_set = false" in line for line in said), said
