"""The composition root: the only place that builds adapters from the config and wires them.

``build_agent`` gives a ready, not yet started agent (used by ``locker-agent run`` and by tests
that need the real thing in-process); ``run_agent`` runs it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locker_agent import __version__
from locker_agent.app.courier_desk import CourierDesk
from locker_agent.app.health import LoopLag, hardware_alive, locks_safe, loop_responsive
from locker_agent.app.ports.hardware import (
    CodeEntry,
    CodeInput,
    DoorSensors,
    HardwareError,
    LockDriver,
)
from locker_agent.app.service import LockerService
from locker_agent.cloud.command_guard import CodeSealing, OperatorKeys
from locker_agent.cloud.commands import CommandProcessor, Vigilance
from locker_agent.cloud.link import MqttLink
from locker_agent.cloud.local_broker import LocalBroker, LocalBrokerError
from locker_agent.cloud.outbox_guard import OutboxGuard
from locker_agent.cloud.policies import RuntimePolicies
from locker_agent.cloud.views import compartment_message
from locker_agent.config import AgentConfig, ConfigError, load_config
from locker_agent.contract.topics import Topics
from locker_agent.domain.locker import Locker
from locker_agent.hardware.console import ConsoleCodeInput
from locker_agent.hardware.simulated import SimulatedLocker
from locker_agent.runtime.clock_sync import KernelClockSync, trusted
from locker_agent.runtime.errors import StartupError
from locker_agent.runtime.hardware import build_code_inputs, build_hardware
from locker_agent.runtime.identity import load_identity
from locker_agent.runtime.policies import build_code_gate, operator_keys_from, unlock_policy_from
from locker_agent.runtime.secret import SecretError
from locker_agent.runtime.state import compartments_from, fail_closed, open_store
from locker_agent.runtime.systemd_notify import Notifier, Watchdog
from locker_agent.store import Store, StoreError
from locker_agent.store.health import database_writable, storage_writable
from locker_agent.store.retention import Retention, RetentionPolicy

if TYPE_CHECKING:
    from locker_agent.api.server import ApiServer

logger = logging.getLogger(__name__)


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
    clock_trusted: Callable[[], bool] = trusted
    """Whether the wall clock may be believed yet (security.wall_clock)."""
    loop_lag: LoopLag = field(default_factory=LoopLag)
    api_try_next_ports: int = 0
    """With the API port taken, try this many after it (the demo; a real locker's kiosk
    browser expects the configured port)."""
    _housekeeping: asyncio.Task[None] | None = None
    _lag_watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.locks.start()
        await self.doors.start()
        await self.service.start()
        self._lag_watch = asyncio.get_running_loop().create_task(
            self.loop_lag.run(), name="loop-lag")
        if self.api is not None:
            from locker_agent.api.server import ApiServerError  # loaded with the API

            try:
                await self.api.start(try_next_ports=self.api_try_next_ports)
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
        for task in (self._housekeeping, self._lag_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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


def settle_heap() -> None:
    """Collect what start-up left behind, then exempt everything alive from the collector.

    The objects made at start-up (modules, classes, validators, the config) live as long as
    the process; with them in the collector's oldest generation, each full collection walked
    some 120,000 objects, a 65 ms stop in the middle of whatever request it landed on
    (measured in the kiosk benchmark: docs/benchmarks.md, issue 19). Frozen, they are never
    walked again. Called once, just after READY.
    """
    gc.collect()
    gc.freeze()


RETENTION_FIRST_RUN_S = 60.0
RETENTION_INTERVAL_S = 3600.0


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


def build_agent(config: AgentConfig, *, cloud: bool = True, api: bool = True) -> Agent:
    """The agent as the config describes it; ``cloud=False`` leaves out the MQTT link,
    ``api=False`` the local HTTP API (hw-test runs beside nothing that needs it)."""
    store, hasher, loss = open_store(config)
    try:
        def load() -> Locker:
            locker = store.load(
                config.locker_id, compartments_from(config), hasher, sizes=config.sizes
            )
            locker.min_code_length = config.policies.min_code_length
            locker.max_waiting_parcels = config.policies.max_waiting_parcels
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
    clock_trusted = trusted if config.security.wall_clock == "trusted" else KernelClockSync()
    service = LockerService(
        locker,
        store,
        locks,
        doors,
        reload=load,
        unlock_policy=unlock_policy_from(policies),
        labels={c.id: c.label or c.id for c in config.compartments},
        gate=build_code_gate(config, store, clock_trusted=clock_trusted),
        wall_floor=store.latest_time(),
    )
    if loss is not None:
        fail_closed(service, loss)
    agent = Agent(config, store, service, locks, doors, simulator, clock_trusted=clock_trusted)
    agent.courier_desk = CourierDesk(service, idle_timeout_s=policies.courier_session_idle_s)
    subscribe_boards = getattr(doors, "subscribe_boards", None)  # boards on a bus (rs485, modbus)
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
    if api and config.api.enabled:
        try:
            build_api(agent)
        except Exception:
            store.close()
            raise
    return agent


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
            loop_responsive(1.0), database_writable(agent.store), hardware_alive(agent),
            storage_writable(agent.store, full=lambda: agent.service.storage_full),
        ],
        mqtt_connected=(lambda: link.connected) if link is not None else None,
        courier_desk=agent.courier_desk,
        loop_lag=lambda: agent.loop_lag.max_s,
        screen_timeout_s=config.api.screen_timeout_s,
        max_body_bytes=config.api.max_body_bytes,
    )
    agent.api = ApiServer(
        create_app(context), host=config.api.host, port=config.api.port,
        max_connections=config.api.max_connections, header_timeout_s=config.api.header_timeout_s,
    )


def build_cloud_link(agent: Agent) -> None:
    """The command processor and the MQTT link (and a local broker if none is configured)."""
    config, service = agent.config, agent.service
    mqtt_config = config.mqtt
    problems = config.command_security_problems()
    if problems:
        raise StartupError("; ".join(problems))
    keys = OperatorKeys(operator_keys_from(config),
                        allow_unsigned=config.security.allow_unsigned_commands)
    if keys.allow_unsigned:
        logger.warning(
            "security.allow_unsigned_commands is on: anyone who can publish on the broker "
            "can command this locker; never use this outside a closed test bench")
    elif config.security.allow_unsigned_commands:
        logger.warning("security.allow_unsigned_commands is ignored: this locker has operator "
                       "keys, so every command but ping must be signed")
    if keys.ids and not config.sealed_codes_required:
        logger.warning("security.require_sealed_codes is off: codes may cross the broker in "
                       "clear, readable by every subscriber")
    try:
        identity = load_identity(config.state_dir, config.locker_id)
    except SecretError as exc:
        raise StartupError(str(exc)) from exc
    sealing = CodeSealing(identity.key, locker_id=config.locker_id,
                          required=config.sealed_codes_required)
    security = config.security
    policies = RuntimePolicies.from_config(config.policies, agent.store.policy_overrides())
    labels = {c.id: c.label or c.id for c in config.compartments}
    positions = {c.id: (c.row, c.column) for c in config.compartments}

    def view(compartment_id: str) -> dict[str, Any]:
        return compartment_message(service.locker, compartment_id, labels, service.now(),
                                   positions=positions)

    boot_id = str(uuid.uuid4())
    processor = CommandProcessor(
        service,
        policies=policies,
        keys=keys,
        sealing=sealing,
        vigilance=Vigilance(
            release_limit=security.release_limit, release_window_s=security.release_window_s,
            collision_alarm_after=security.collision_alarm_after,
        ),
        clock_trusted=agent.clock_trusted,
        topics=Topics(mqtt_config.topic_prefix, config.locker_id),
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
    agent.link.loop_lag = lambda: agent.loop_lag.max_s


async def run_agent(
    config: AgentConfig,
    *,
    demo: bool = False,
    console: bool | None = None,
    out: Callable[[str], None] = print,
    config_path: Path | None = None,
) -> int:
    """Run the locker until SIGTERM or SIGINT; SIGHUP reloads runtime policies."""
    # taken out of the environment so the local broker never speaks to systemd in our name
    notifier = Notifier.from_environment(unset_environment=True)
    watchdog: Watchdog | None = None
    agent = build_agent(config)
    if demo:
        from locker_agent.runtime.demo import DEMO_API_PORTS

        agent.api_try_next_ports = DEMO_API_PORTS
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
        settle_heap()
        ping_interval = notifier.watchdog_ping_interval()
        if ping_interval is not None:
            watchdog = Watchdog(
                notifier,
                # the process's own health; a dead lock board is an alarm, not a restart
                [loop_responsive(ping_interval), database_writable(agent.store),
                 locks_safe(agent.locks)],
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
            from locker_agent.runtime.demo import grant_demo_courier, seed_demo_parcels

            await seed_demo_parcels(agent.service, config, out=out)
            grant_demo_courier(agent.service, out=out)
        if agent.api is not None:
            out(f"Kiosk page: {agent.api.kiosk_url}  (open it in a browser and type a code)")
        await start_code_inputs(agent)  # the keypad and scanner, if configured
        use_console = (
            console if console is not None
            else config.hardware.simulated.console and sys.stdin.isatty()
        )
        if use_console and agent.simulator is not None:
            from locker_agent.runtime.operator_console import OperatorConsole

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
    "locker_id", "state_dir", "sizes", "hardware", "mqtt", "api", "compartments", "security",
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
