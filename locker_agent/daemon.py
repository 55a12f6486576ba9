"""The composition root: the only place that builds adapters from the config and wires them.

``build_agent`` gives a ready, not yet started agent (used by ``locker-agent run`` and by tests
that need the real thing in-process); ``run_agent`` runs it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locker_agent import __version__
from locker_agent.cloud.commands import CommandProcessor
from locker_agent.cloud.link import MqttLink
from locker_agent.cloud.local_broker import LocalBroker, LocalBrokerError
from locker_agent.cloud.outbox_guard import OutboxGuard
from locker_agent.cloud.policies import RuntimePolicies
from locker_agent.cloud.signing import SigningKeyError, load_public_key
from locker_agent.cloud.topics import Topics
from locker_agent.cloud.views import compartment_message
from locker_agent.code_gate import CodeGate
from locker_agent.config import AgentConfig, ConfigError, Policies, load_config
from locker_agent.courier_desk import CourierDesk
from locker_agent.domain.credentials import CodeHasher
from locker_agent.domain.locker import Locker
from locker_agent.domain.lockout import LockoutPolicy
from locker_agent.domain.model import Compartment, DomainEvent
from locker_agent.hardware.console import ConsoleCodeInput
from locker_agent.hardware.interfaces import (
    CodeEntry,
    CodeInput,
    DoorSensors,
    HardwareError,
    LockDriver,
)
from locker_agent.hardware.safety import SafeLocks
from locker_agent.hardware.simulated import SimulatedLocker
from locker_agent.secret import SecretError, load_secret
from locker_agent.service import LockerService, UnlockPolicy
from locker_agent.store import Store, StoreError
from locker_agent.store.code_guard import CodeGuardStore
from locker_agent.store.migrations import SchemaError
from locker_agent.store.retention import Retention, RetentionPolicy
from locker_agent.systemd_notify import (
    Notifier,
    Watchdog,
    database_writable,
    hardware_alive,
    loop_responsive,
)

if TYPE_CHECKING:
    from locker_agent.api.server import ApiServer
    from locker_agent.hardware.gpio import GpioLocker
    from locker_agent.hardware.rs485 import Rs485Locker

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """The agent cannot start; the message says why and what to do."""


@dataclass
class Agent:
    config: AgentConfig
    store: Store
    service: LockerService
    locks: LockDriver
    doors: DoorSensors
    simulator: SimulatedLocker | None = None
    inputs: list[CodeInput] = field(default_factory=list)
    processor: CommandProcessor | None = None
    link: MqttLink | None = None
    local_broker: LocalBroker | None = None
    retention: Retention | None = None
    api: ApiServer | None = None
    courier_desk: CourierDesk | None = None
    _housekeeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.locks.start()
        await self.doors.start()
        await self.service.start()
        if self.api is not None:
            from locker_agent.api.server import ApiServerError  # loaded with the API

            try:
                await self.api.start()
            except ApiServerError as exc:
                raise StartupError(str(exc)) from exc
        if self.retention is not None:
            self._housekeeping = asyncio.get_running_loop().create_task(
                self._keep_disk_bounded(), name="retention"
            )
        if self.link is not None:
            if self.local_broker is not None:
                try:
                    await self.local_broker.start()
                except LocalBrokerError as exc:
                    raise StartupError(str(exc)) from exc
                self.link.set_endpoint(self.local_broker.host, self.local_broker.port)
            await self.link.start()

    async def stop(self) -> None:
        """Stop taking codes, let pulses finish, flush events, say offline, close the DB."""
        if self.api is not None:
            await self.api.stop()
        for code_input in self.inputs:
            await code_input.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.service.stop()
        if self.link is not None:
            await self.link.stop()
        await self.doors.stop()
        await self.locks.stop()
        if self.local_broker is not None:
            await self.local_broker.stop()
        self.store.close()


    async def _keep_disk_bounded(self) -> None:
        """Run the retention policy hourly, off the event loop, never while a door is opening.

        Off the loop because a VACUUM can take a second on an SD card and the loop times the
        relay pulses; between unlocks because SQLite makes writers wait for a VACUUM.
        """
        assert self.retention is not None
        retention = self.retention
        loop = asyncio.get_running_loop()
        await asyncio.sleep(RETENTION_FIRST_RUN_S)
        while True:
            if not self.service.locker.intents:
                try:
                    await loop.run_in_executor(None, retention.run, self.service.now())
                except Exception:
                    logger.exception("retention run failed; trying again next time")
                await asyncio.sleep(RETENTION_INTERVAL_S)
            else:
                await asyncio.sleep(30)


RETENTION_FIRST_RUN_S = 60.0
RETENTION_INTERVAL_S = 3600.0


def compartments_from(config: AgentConfig) -> list[Compartment]:
    return [
        Compartment(id=c.id, size=c.size, accessible=c.accessible) for c in config.compartments
    ]


@dataclass(frozen=True)
class StateLoss:
    """The database was damaged or missing at start: what was kept aside, and why."""

    reason: str
    kept_aside: Path | None


def _damage(store: Store) -> list[str]:
    try:
        return store.quick_check()
    except Exception as exc:  # not even a database: "file is not a database", I/O errors
        return [str(exc).splitlines()[0]]


def _keep_aside(database: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = database.with_name(f"{database.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = database.with_name(database.name + suffix)
        if part.exists():
            part.rename(target.with_name(target.name + suffix))
    return target


def open_store(config: AgentConfig) -> tuple[Store, CodeHasher, StateLoss | None]:
    """Open (creating if need be) the state directory, the database and the secret.

    Fails closed: a damaged database is kept aside and a new one started, and a database
    that vanished while the locker's secret remained is treated the same way; the caller
    then takes every compartment out of service until the cloud has synced the locker.
    """
    state_dir = config.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise StartupError(
            f"cannot create the state directory {state_dir}: {exc.strerror}; "
            "set state_dir in the config or LOCKER_AGENT_STATE_DIR"
        ) from exc
    database = config.database_path
    is_new = not database.exists()
    loss: StateLoss | None = None
    if is_new and config.secret_path.exists():
        loss = StateLoss("the database is missing but this locker has run before", None)
        logger.error("state lost: database missing", extra={"fields": {"path": str(database)}})
    try:
        store = Store(database, exclusive=True)
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
    problems = [] if is_new else _damage(store)
    if problems:
        store.close()
        kept = _keep_aside(database)
        loss = StateLoss(f"the database was damaged: {'; '.join(problems[:3])}", kept)
        logger.error(
            "state lost: damaged database kept aside",
            extra={"fields": {"path": str(database), "kept_aside": str(kept),
                              "problems": "; ".join(problems[:3])}},
        )
        store = Store(database, exclusive=True)
        is_new = True
    try:
        store.migrate()
        has_codes = bool(store.execute_sql("SELECT 1 FROM credential LIMIT 1"))
        secret = load_secret(config.secret_path, create=is_new or not has_codes)
    except (SchemaError, SecretError) as exc:
        store.close()
        raise StartupError(str(exc)) from exc
    except Exception:
        store.close()
        raise
    return store, CodeHasher(secret), loss


def fail_closed(service: LockerService, loss: StateLoss) -> None:
    """Every compartment locked and out of service, and the cloud told to sync this locker."""
    now = service.now()
    reason = "state lost: awaiting sync from the cloud"
    for compartment_id in list(service.locker.compartments):
        service.apply(
            partial(service.locker.set_compartment_service, compartment_id,
                    in_service=False, reason=reason, now=now)
        )
    kept = str(loss.kept_aside) if loss.kept_aside else None
    event = DomainEvent(
        "state_lost", now,
        data={"reason": loss.reason, "kept_aside": kept,
              "action": "sync this locker, re-send its assignments, then set_service back in"},
    )
    service.apply(lambda: [event])


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


async def start_code_inputs(agent: Agent) -> None:
    """Start the configured keypad and scanner; their codes go to the service."""

    async def submit(entry: CodeEntry) -> None:
        outcome = await agent.service.submit_code(entry)
        if outcome.ok:
            logger.info("code accepted", extra={"fields": {
                "source": entry.source, "compartments": ",".join(outcome.compartments)}})

    for code_input in list(agent.inputs):
        try:
            await code_input.start(submit)
        except HardwareError as exc:  # the locker still serves the cloud and other inputs
            logger.error("code input %s not started: %s", type(code_input).__name__, exc)
            agent.inputs.remove(code_input)


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
    )


def build_agent(config: AgentConfig, *, cloud: bool = True) -> Agent:
    """The agent as the config describes it; ``cloud=False`` leaves out the MQTT link."""
    store, hasher, loss = open_store(config)
    try:
        def load() -> Locker:
            locker = store.load(
                config.locker_id, compartments_from(config), hasher, sizes=config.sizes
            )
            locker.min_code_length = config.policies.min_code_length
            return locker

        locker = load()
        locks, doors, simulator = build_hardware(config)
    except StoreError as exc:
        store.close()
        raise StartupError(str(exc)) from exc
    except Exception:
        store.close()
        raise
    policies = config.policies
    service = LockerService(
        locker,
        store,
        locks,
        doors,
        reload=load,
        unlock_policy=unlock_policy_from(policies),
        labels={c.id: c.label or c.id for c in config.compartments},
        gate=build_code_gate(config, store),
    )
    if loss is not None:
        fail_closed(service, loss)
    agent = Agent(config, store, service, locks, doors, simulator)
    agent.courier_desk = CourierDesk(service, idle_timeout_s=policies.courier_session_idle_s)
    subscribe_boards = getattr(doors, "subscribe_boards", None)  # lock-control boards (rs485)
    if subscribe_boards is not None:
        subscribe_boards(service.board_changed)
    agent.inputs.extend(build_code_inputs(config, locks))
    agent.retention = Retention(store, RetentionPolicy.from_config(config.retention))
    if cloud and config.mqtt.enabled:
        try:
            build_cloud_link(agent)
        except Exception:
            store.close()
            raise
    if config.api.enabled:
        try:
            build_api(agent)
        except Exception:
            store.close()
            raise
    return agent


def build_code_gate(config: AgentConfig, store: Store) -> CodeGate:
    """Lockouts from the policies, and the keys that signed QR tokens are checked against."""
    try:
        keys = [load_public_key(value) for value in config.tokens.public_keys]
    except (SigningKeyError, OSError, ValueError) as exc:
        raise StartupError(f"tokens.public_keys: {exc}") from exc
    customer, courier = lockout_policies(config.policies)
    return CodeGate(
        CodeGuardStore(store.engine),
        customer_policy=customer,
        courier_policy=courier,
        public_keys=keys,
        locker_id=config.locker_id,
        max_courier_validity_s=config.tokens.max_courier_validity_h * 3600,
    )


def lockout_policies(policies: Policies) -> tuple[LockoutPolicy, LockoutPolicy]:
    """The customers' and the couriers' lockout, as the config sets them."""
    per_input = partial(
        LockoutPolicy,
        free_failures=policies.lockout_free_attempts,
        first_delay_s=policies.lockout_first_delay_s,
        max_delay_s=policies.lockout_max_delay_s,
        input_quiet_s=policies.lockout_input_quiet_s,
    )
    return (
        per_input(
            locker_burst=policies.lockout_locker_burst,
            locker_per_hour=policies.lockout_locker_per_hour,
        ),
        per_input(
            locker_burst=policies.courier_lockout_locker_burst,
            locker_per_hour=policies.courier_lockout_locker_per_hour,
        ),
    )


def build_api(agent: Agent) -> None:
    """The local HTTP API and kiosk page, served on the agent's loop (see Agent.start).

    Imported here, not at the top: a locker without a kiosk never loads FastAPI and uvicorn
    (measured in docs/benchmarks.md).
    """
    from locker_agent.api import ApiContext, Place, create_app
    from locker_agent.api.server import ApiServer
    from locker_agent.api.token import TokenError, load_or_create_token

    config = agent.config
    if config.api.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning(
            "the local API listens on %s: codes typed on the kiosk page and the maintenance "
            "token cross that network in clear; keep it on 127.0.0.1 unless a TLS proxy "
            "or a trusted link sits in front", config.api.host,
        )
    try:
        token = load_or_create_token(config.state_dir)
    except (TokenError, OSError) as exc:
        raise StartupError(f"api token: {exc}") from exc
    link = agent.link
    context = ApiContext(
        locker_id=config.locker_id,
        service=agent.service,
        places={
            c.id: Place(label=c.label or c.id, size=c.size, row=c.row, column=c.column)
            for c in config.compartments
        },
        maintenance_token=token,
        health_checks=[
            loop_responsive(1.0), database_writable(agent.store), hardware_alive(agent)
        ],
        mqtt_connected=(lambda: link.connected) if link is not None else None,
        courier_desk=agent.courier_desk,
        screen_timeout_s=config.api.screen_timeout_s,
        max_body_bytes=config.api.max_body_bytes,
    )
    agent.api = ApiServer(create_app(context), host=config.api.host, port=config.api.port)


def build_cloud_link(agent: Agent) -> None:
    """The command processor and the MQTT link (and a local broker if none is configured)."""
    config, service = agent.config, agent.service
    mqtt_config = config.mqtt
    operator_key = None
    if mqtt_config.operator_public_key:
        try:
            operator_key = load_public_key(mqtt_config.operator_public_key)
        except (SigningKeyError, OSError, ValueError) as exc:
            raise StartupError(f"mqtt.operator_public_key: {exc}") from exc
    policies = RuntimePolicies.from_config(config.policies, agent.store.policy_overrides())
    labels = {c.id: c.label or c.id for c in config.compartments}

    def view(compartment_id: str) -> dict[str, Any]:
        return compartment_message(service.locker, compartment_id, labels, service.now())

    boot_id = str(uuid.uuid4())
    processor = CommandProcessor(
        service,
        policies=policies,
        operator_key=operator_key,
        horizon=timedelta(hours=mqtt_config.command_horizon_h),
        boot_id=boot_id,
        compartment_view=view,
    )
    agent.processor = processor
    if mqtt_config.host is None:
        agent.local_broker = LocalBroker(config.state_dir)
    agent.link = MqttLink(
        mqtt_config,
        host=mqtt_config.host or "127.0.0.1",
        port=mqtt_config.port,
        client_id=config.mqtt_client_id,
        service=service,
        processor=processor,
        topics=Topics(mqtt_config.topic_prefix, config.locker_id),
        boot_id=boot_id,
        compartment_view=view,
        telemetry_interval_s=lambda: processor.policies.telemetry_interval_s,
        outbox_guard=OutboxGuard(service, mqtt_config.max_outbox_events),
    )


async def run_agent(
    config: AgentConfig,
    *,
    demo: bool = False,
    console: bool | None = None,
    out: Callable[[str], None] = print,
    config_path: Path | None = None,
) -> int:
    """Run the locker until SIGTERM or SIGINT; SIGHUP reloads runtime policies."""
    from locker_agent.demo import seed_demo_parcels
    from locker_agent.operator_console import OperatorConsole

    # taken out of the environment so the local broker never speaks to systemd in our name
    notifier = Notifier.from_environment(unset_environment=True)
    watchdog: Watchdog | None = None
    agent = build_agent(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if config_path is not None:
        path = config_path

        def reload() -> None:
            notifier.reloading()
            reload_policies(agent, path)
            notifier.ready(status=f"locker {agent.config.locker_id} running")

        loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await agent.start()
        # the database and the hardware are up: only now is the locker ready
        notifier.ready(status=f"locker {config.locker_id} running")
        ping_interval = notifier.watchdog_ping_interval()
        if ping_interval is not None:
            watchdog = Watchdog(
                notifier,
                [loop_responsive(ping_interval), database_writable(agent.store),
                 hardware_alive(agent)],
                ping_interval,
            )
            watchdog.start()
        logger.info(
            "locker started",
            extra={"fields": {
                "locker_id": config.locker_id,
                "version": __version__,
                "backend": config.hardware.backend,
                "state_dir": str(config.state_dir),
                "compartments": len(config.compartments),
            }},
        )
        out(f"locker {config.locker_id} is running; its state lives in {config.state_dir}")
        if demo:
            await seed_demo_parcels(agent.service, config, out=out)
        if agent.api is not None:
            out(f"Kiosk page: {agent.api.kiosk_url}  (open it in a browser and type a code)")
        await start_code_inputs(agent)  # the keypad and scanner, if configured
        use_console = (
            console if console is not None
            else config.hardware.simulated.console and sys.stdin.isatty()
        )
        if use_console and agent.simulator is not None:
            operator = OperatorConsole(agent.service, agent.simulator, out=out)
            console_input = ConsoleCodeInput(commands=operator.command)

            async def submit(entry: CodeEntry) -> None:
                outcome = await agent.service.submit_code(entry)
                out(outcome.message)

            agent.inputs.append(console_input)
            await console_input.start(submit)
            out(operator.greeting())
        await stop.wait()
        logger.info("stopping", extra={"fields": {"locker_id": config.locker_id}})
    finally:
        notifier.stopping()
        if watchdog is not None:
            await watchdog.stop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await agent.stop()
    return 0


RESTART_ONLY = (
    "locker_id", "state_dir", "sizes", "hardware", "mqtt", "api", "compartments"
)
"""Config sections a reload cannot apply to a running locker: they need a restart."""


def reload_policies(agent: Agent, config_path: Path) -> bool:
    """Apply the config file's policies and log level without dropping any state.

    A file that no longer validates is refused with a log line; the running config stays.
    """
    try:
        new = load_config(config_path)
    except ConfigError as exc:
        logger.error("reload refused, keeping the running config: %s", exc)
        return False
    old = agent.config
    needs_restart = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
    if needs_restart:
        logger.warning("reload: changes to %s need a restart and were not applied",
                       ", ".join(needs_restart))
    policies = new.policies
    agent.service.set_unlock_policy(unlock_policy_from(policies))
    if agent.processor is not None:
        overrides = agent.store.policy_overrides()
        agent.processor.set_policies(RuntimePolicies.from_config(policies, overrides))
    logging.getLogger().setLevel(new.log_level)
    agent.config = old.model_copy(update={"policies": policies, "log_level": new.log_level})
    logger.info("reloaded policies", extra={"fields": {"path": str(config_path)}})
    return True


def unlock_policy_from(policies: Policies) -> UnlockPolicy:
    return UnlockPolicy(
        pulse_s=policies.lock_pulse_ms / 1000,
        max_simultaneous=policies.max_simultaneous_unlocks,
        gap_s=policies.unlock_gap_ms / 1000,
        door_open_timeout_s=policies.door_open_timeout_s,
        door_left_open_alarm_s=policies.door_left_open_alarm_s,
    )
