"""Building the configured hardware: the lock backend, its door sensors, keypad and scanner.

Drivers for real hardware are imported only when the config names them, so a simulated
locker never loads gpiozero's pin backends, pyserial or pymodbus.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from locker_agent.app.ports.hardware import CodeInput, DoorSensors, LockDriver
from locker_agent.app.safety import SafeLocks
from locker_agent.config import AgentConfig
from locker_agent.hardware.simulated import SimulatedLocker
from locker_agent.runtime.errors import StartupError

if TYPE_CHECKING:
    from locker_agent.hardware.gpio import GpioLocker
    from locker_agent.hardware.modbus import ModbusLocker
    from locker_agent.hardware.rs485 import Rs485Locker


def build_hardware(config: AgentConfig) -> tuple[SafeLocks, DoorSensors, SimulatedLocker | None]:
    """The configured backend, its locks held to the safety rules (hardware/safety.py)."""
    driver, doors, simulator = _build_backend(config)
    policies = config.policies
    locks = SafeLocks(
        driver,
        max_simultaneous=policies.max_simultaneous_unlocks,
        gap_s=policies.unlock_gap_ms / 1000,
    )
    return locks, doors, simulator


def _build_backend(
    config: AgentConfig,
) -> tuple[LockDriver, DoorSensors, SimulatedLocker | None]:
    backend = config.hardware.backend
    if backend == "simulated":
        options = config.hardware.simulated
        simulator = SimulatedLocker(
            [c.id for c in config.compartments],
            auto_open_on_unlock=options.auto_open_on_unlock,
            auto_close_after_s=options.auto_close_after_s,
        )
        return simulator, simulator, simulator
    if backend == "gpio":
        gpio = _build_gpio(config)
        return gpio, gpio, None
    if backend == "modbus":
        modbus = _build_modbus(config)
        return modbus, modbus, None
    rs485 = _build_rs485(config)
    return rs485, rs485, None


PIN_FACTORIES = {
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
    "mock": "gpiozero.pins.mock:MockFactory",
}
"""gpiozero's pin backends by the names its own GPIOZERO_PIN_FACTORY variable uses."""


def _pin_factory(name: str) -> object:
    target = PIN_FACTORIES.get(name)
    if target is None:
        raise StartupError(
            f"hardware.gpio.pin_factory = {name!r}: must be one of {', '.join(PIN_FACTORIES)}"
        )
    module_name, class_name = target.split(":")
    try:
        factory_class = getattr(importlib.import_module(module_name), class_name)
        return factory_class()
    except Exception as exc:  # the library for that backend is missing, or not a Pi
        raise StartupError(f"hardware.gpio.pin_factory = {name!r}: {exc}") from exc


def _build_gpio(config: AgentConfig) -> GpioLocker:
    from locker_agent.hardware.gpio import GpioLocker

    options = config.hardware.gpio
    return GpioLocker(
        {c.id: int(c.lock) for c in config.compartments if c.lock is not None},
        {c.id: int(c.sensor) for c in config.compartments if c.sensor is not None},
        relay_active_high=options.relay_active_high,
        door_closed_when=options.door_closed_when,
        door_debounce_ms=options.door_debounce_ms,
        door_poll_interval_s=options.door_poll_interval_s,
        pin_factory=_pin_factory(options.pin_factory) if options.pin_factory else None,
    )


def build_code_inputs(config: AgentConfig, locks: LockDriver | None = None) -> list[CodeInput]:
    """The keypad and scanner the config names (none by default); started by the caller.

    A keypad shares the GPIO backend's pin factory when there is one (``locks``), so both
    see the same pins (and the same mock pins in tests).
    """
    inputs: list[CodeInput] = []
    hardware = config.hardware
    if hardware.keypad is not None:
        from locker_agent.config import KEYPAD_LAYOUTS
        from locker_agent.hardware.keypad import MatrixKeypad

        keypad = hardware.keypad
        driver = locks.driver if isinstance(locks, SafeLocks) else locks
        factory = getattr(driver, "pin_factory", None)
        if factory is None and hardware.gpio.pin_factory:
            factory = _pin_factory(hardware.gpio.pin_factory)
        inputs.append(MatrixKeypad(
            keypad.rows, keypad.columns, KEYPAD_LAYOUTS[keypad.layout],
            pin_factory=factory, enter_key=keypad.enter_key, clear_key=keypad.clear_key,
            max_length=keypad.max_length, entry_timeout_s=keypad.entry_timeout_s,
        ))
    if hardware.scanner is not None:
        from locker_agent.hardware.scanner import SerialScanner

        scanner = hardware.scanner
        inputs.append(SerialScanner(
            scanner.port, baudrate=scanner.baudrate, max_length=scanner.max_length,
            line_timeout_s=scanner.line_timeout_ms / 1000,
        ))
    return inputs


def _build_rs485(config: AgentConfig) -> Rs485Locker:
    from locker_agent.config import parse_board_channel
    from locker_agent.hardware.rs485 import Rs485Locker

    options = config.hardware.rs485
    return Rs485Locker(
        {c.id: parse_board_channel(str(c.lock)) for c in config.compartments},
        port=options.port,
        baudrate=options.baudrate,
        timeout_ms=options.timeout_ms,
        retries=options.retries,
        inter_frame_gap_ms=options.inter_frame_gap_ms,
        poll_interval_s=options.poll_interval_s,
        lock_bit_open_when_set=options.lock_bit_open_when_set,
        unlock_pulse_s=config.policies.lock_pulse_ms / 1000,
        set_unlock_time=options.set_unlock_time,
        answers_unlock=options.answers_unlock,
        fast_poll_interval_s=options.fast_poll_interval_ms / 1000,
        door_watch_s=(options.door_watch_s if options.door_watch_s is not None
                      else config.policies.door_open_timeout_s),
    )


def _build_modbus(config: AgentConfig) -> ModbusLocker:
    from locker_agent.config import parse_unit_channel
    from locker_agent.hardware.modbus import ModbusLocker

    options = config.hardware.modbus
    compartments = config.compartments
    return ModbusLocker(
        {c.id: parse_unit_channel(str(c.lock)) for c in compartments},
        {c.id: parse_unit_channel(str(c.sensor or c.lock)) for c in compartments},
        port=options.port,
        baudrate=options.baudrate,
        parity=options.parity,
        stopbits=options.stopbits,
        timeout_ms=options.timeout_ms,
        retries=options.retries,
        inter_frame_gap_ms=options.inter_frame_gap_ms,
        poll_interval_s=options.poll_interval_s,
        first_coil_address=options.first_coil_address,
        first_input_address=options.first_input_address,
        door_closed_when=options.door_closed_when,
    )
