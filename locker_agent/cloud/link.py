"""The MQTT link: one paho-mqtt client driven from the asyncio event loop.

paho runs without its own thread: its socket is watched with ``add_reader``/``add_writer`` and
``loop_misc`` runs on a timer, so every paho callback (and so every command) runs on the event
loop thread, the one that owns the locker's state. Only the blocking TCP/TLS connect runs in a
worker thread.

* **Reconnect** with exponential backoff and equal jitter (paho's own has no jitter; a fleet
  must not stampede a restarted broker), a persistent session (MQTT 5 session expiry, or
  clean_session=False on 3.1.1) and subscriptions renewed on every connect.
* **Events** leave the outbox in ``seq`` order, at most ``max_inflight`` unacknowledged at once,
  and are marked published only when the broker's PUBACK came back (written with the next
  commit, or within ``PUBLISHED_WRITE_S``: a lost mark only means the event is sent again).
  After a reconnect anything not acknowledged is sent again with the same event id:
  at-least-once, deduplicable.
* **Presence**: a retained birth on ``status`` on every connect, a Last Will that marks the
  locker offline, and an explicit offline status on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from locker_agent import __version__
from locker_agent.app.ports.storage import StoredEvent
from locker_agent.app.service import LockerService
from locker_agent.cloud.admission import CommandAdmission
from locker_agent.cloud.commands import CommandProcessor
from locker_agent.cloud.outbox_guard import OutboxGuard
from locker_agent.config import MqttConfig
from locker_agent.contract import messages as c
from locker_agent.contract.topics import Topics
from locker_agent.contract.transport import send_without_delay
from locker_agent.domain.model import DomainEvent

logger = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0
CONNECT_TIMEOUT_S = 15.0
ACK_TIMEOUT_S = 30.0
"""An event not acknowledged this long after it was handed to paho is sent again."""
PAHO_QUEUE_LIMIT = 1000
"""paho's own queue is unbounded by default; ours never needs more than this."""
PUBLISHED_WRITE_S = 1.0
"""Acknowledged events are marked published with the next commit, or this long after the
first acknowledgement waiting if nothing is committed meanwhile (or at max_inflight of them)."""


def backoff_delay(attempt: int, minimum: float, maximum: float, rng: Callable[[], float]) -> float:
    """Exponential backoff with equal jitter: half the cap, plus up to half again at random."""
    cap = min(maximum, minimum * 2.0 ** min(attempt, 30))
    return float(cap / 2 + rng() * cap / 2)


@dataclass
class _Inflight:
    seq: int
    info: mqtt.MQTTMessageInfo
    sent_at: float


@dataclass
class LinkStats:
    connects: int = 0
    disconnects: int = 0
    events_published: int = 0
    commands_received: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        *,
        host: str,
        port: int,
        client_id: str,
        service: LockerService,
        processor: CommandProcessor,
        topics: Topics,
        boot_id: str,
        compartment_view: Callable[[str], dict[str, Any]],
        telemetry_interval_s: Callable[[], float],
        outbox_guard: OutboxGuard | None = None,
        rng: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._host, self._port = host, port
        self._service = service
        self._processor = processor
        self._topics = topics
        self._boot_id = boot_id
        self._online_since: datetime | None = None
        """When the current connection came up: the online status's ``since``."""
        self._view = compartment_view
        self._telemetry_interval_s = telemetry_interval_s
        self._outbox_guard = outbox_guard
        self._rng = rng
        self._monotonic = monotonic
        self._started_at = monotonic()
        self.stats = LinkStats()
        self.loop_lag: Callable[[], float] = lambda: 0.0
        """The event loop's recent worst lag, in seconds (set by the composition root)."""
        self.admission: CommandAdmission[mqtt.MQTTMessage] = CommandAdmission(
            config.max_commands_per_s, config.command_burst, config.command_queue_size,
            monotonic=monotonic,
        )
        self._queue_served: asyncio.TimerHandle | None = None
        self._v5 = config.protocol == "5"
        self._client = self._make_client(client_id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._wake_drain = asyncio.Event()
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._inflight: dict[int, _Inflight] = {}
        self._last_handed_seq = 0
        self._dirty_compartments: set[str] = set()
        self._published_free: dict[str, int] = {}
        self._stopping = False
        self._socket: socket.socket | None = None
        self._published_write: asyncio.TimerHandle | None = None
        self._reply_unsent = False
        self._newest_seq: float = float("inf")
        """The highest event seq committed that the drain knows of (inf: not known, ask)."""

    # ----------------------------------------------------------------- lifecycle

    def set_endpoint(self, host: str, port: int) -> None:
        """Point the link at another broker (before start; used for the local broker)."""
        self._host, self._port = host, port

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._service.subscribe(self._on_committed)
        self._processor.on_replay.append(self._on_replay)
        self._tasks = [
            self._loop.create_task(self._connection_manager(), name="mqtt-connect"),
            self._loop.create_task(self._drain_outbox(), name="mqtt-outbox"),
            self._loop.create_task(self._misc_timer(), name="mqtt-misc"),
            self._loop.create_task(self._telemetry_timer(), name="mqtt-telemetry"),
        ]

    async def stop(self, *, flush_deadline_s: float = 3.0) -> None:
        """Flush what the broker will take within the deadline, say offline, disconnect."""
        if self.connected and flush_deadline_s > 0:
            deadline = self._monotonic() + flush_deadline_s
            while self._monotonic() < deadline and (
                self._inflight or self._service.store.outbox_depth()
            ):
                self._wake_drain.set()
                await asyncio.sleep(0.05)
        self._stopping = True
        if self._queue_served is not None:
            self._queue_served.cancel()
            self._queue_served = None
        self._write_published()
        if self.connected:
            info = self._publish_model(self._topics.status, self._status(online=False), retain=True)
            with contextlib.suppress(Exception):
                await self._wait_published(info, 2.0)
            self._client.disconnect()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._close_socket_watch()

    # ------------------------------------------------------------------ client

    def _make_client(self, client_id: str) -> mqtt.Client:
        config = self._config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else False,
            reconnect_on_failure=False,
        )
        client.suppress_exceptions = True  # a callback bug is logged, never kills the link
        client.max_queued_messages_set(PAHO_QUEUE_LIMIT)
        client.max_inflight_messages_set(config.max_inflight + 50)
        if config.username:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls:
            context = ssl.create_default_context(
                cafile=str(config.ca_file) if config.ca_file else None
            )
            if config.cert_file and config.key_file:
                context.load_cert_chain(str(config.cert_file), str(config.key_file))
            client.tls_set_context(context)
        client.will_set(
            self._topics.status,
            self._status(online=False).model_dump_json(),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    # paho calls these from the connect thread or the loop thread; hop to the loop either way
    def _in_loop(self, action: Callable[[], None]) -> None:
        assert self._loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            action()
        else:
            self._loop.call_soon_threadsafe(action)

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        send_without_delay(sock)

        def watch() -> None:
            assert self._loop is not None
            self._socket = sock
            self._loop.add_reader(sock, self._safe(client.loop_read))
        self._in_loop(watch)

    def _on_socket_close(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._close_socket_watch)

    def _on_socket_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        def watch() -> None:
            assert self._loop is not None
            current = self._socket
            if current is not None and current is sock:
                self._loop.add_writer(current, self._safe(client.loop_write))
        self._in_loop(watch)

    def _on_socket_unregister_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        def unwatch() -> None:
            assert self._loop is not None
            with contextlib.suppress(Exception):
                self._loop.remove_writer(sock)
        self._in_loop(unwatch)

    def _close_socket_watch(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock)
            with contextlib.suppress(Exception):
                self._loop.remove_writer(sock)

    def _safe(self, action: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                action()
            except Exception:
                self.stats.count_error("network_loop")
                logger.exception("MQTT network loop step failed")
        return run

    # -------------------------------------------------------------- connecting

    async def _connection_manager(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                await self._connect_once()
                attempt = 0
                await self._disconnected.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, unreachable, TLS failure, timeout
                self.stats.count_error("connect")
                logger.warning(
                    "MQTT connect failed",
                    extra={"fields": {"host": self._host, "port": self._port,
                                      "error": str(exc) or type(exc).__name__}},
                )
            if self._stopping:
                return
            delay = backoff_delay(
                attempt, self._config.reconnect_min_s, self._config.reconnect_max_s, self._rng
            )
            attempt += 1
            logger.info("MQTT reconnect scheduled", extra={"fields": {"in_s": round(delay, 2)}})
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        assert self._loop is not None
        self._disconnected.clear()
        self._connack = self._loop.create_future()
        # the Last Will says what we knew at this connect, not at start-up
        self._client.will_set(
            self._topics.status, self._status(online=False).model_dump_json(), qos=1, retain=True
        )
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._config.session_expiry_s
        client = self._client
        await self._loop.run_in_executor(
            None,
            lambda: client.connect(
                self._host, self._port, keepalive=self._config.keepalive_s,
                clean_start=False if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=properties,
            ),
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reason = await self._connack
        except TimeoutError:
            self._drop_connection()
            raise ConnectionError("no CONNACK from the broker") from None
        if reason.is_failure:
            self._drop_connection()
            raise ConnectionError(f"the broker refused the connection: {reason}")

    def _drop_connection(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._close_socket_watch()
        self._connected.clear()
        self._disconnected.set()

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)
        if reason.is_failure:
            return
        self.stats.connects += 1
        self._connected.set()
        logger.info(
            "MQTT connected",
            extra={"fields": {"host": self._host, "port": self._port,
                              "session_present": flags.session_present}},
        )
        # after paho has re-sent what it had in flight: publish from the loop, not from here
        assert self._loop is not None
        self._loop.call_soon(self._after_connect)

    def _after_connect(self) -> None:
        if self._v5:
            # retain-as-published lets us see (and refuse) a command someone retained
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            self._client.subscribe(self._topics.commands, options=options)
        else:
            self._client.subscribe(self._topics.commands, qos=1)
        self._published_free = self._service.locker.free_by_size()
        self._online_since = self._service.now()
        self._publish_model(self._topics.status, self._status(online=True), retain=True)
        for compartment_id in self._service.locker.compartments:
            self._publish_compartment(compartment_id)
        # anything still unacknowledged is sent again, in order, from the outbox
        self._write_published()
        self._inflight.clear()
        self._last_handed_seq = 0
        self._newest_seq = float("inf")
        self._wake_drain.set()

    def _on_disconnect(
        self, client: mqtt.Client, _u: Any, flags: mqtt.DisconnectFlags, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        if self._connack is not None and not self._connack.done():
            # closed before CONNACK: a refused client certificate looks like this under TLS 1.3
            self._connack.set_exception(
                ConnectionError(f"the broker closed the connection before CONNACK: {reason}")
            )
        self._connected.clear()
        self._disconnected.set()
        self._close_socket_watch()
        if was_connected:
            self.stats.disconnects += 1
            # asked for by a clean stop: news, not a problem
            log = logger.info if self._stopping else logger.warning
            log("MQTT disconnected", extra={"fields": {"reason": str(reason)}})

    async def _misc_timer(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if self._socket is not None:
                self._safe(self._client.loop_misc)()

    # ---------------------------------------------------------------- commands

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.stats.commands_received += 1
        admitted, flood = self.admission.offer(message)
        if flood:
            self._flood_began()
        if admitted:
            self._handle_command(message)
        elif self.admission.waiting:
            self._serve_queue_later()

    def _serve_queue_later(self) -> None:
        if self._queue_served is not None or self._loop is None:
            return
        self._queue_served = self._loop.call_later(
            self.admission.next_turn_s(), self._serve_queue
        )

    def _serve_queue(self) -> None:
        self._queue_served = None
        for message in self.admission.take_ready():
            try:
                self._handle_command(message)
            except Exception:
                logger.exception("a queued command failed")
        if self.admission.waiting:
            self._serve_queue_later()

    def _flood_began(self) -> None:
        """More commands than the locker admits, even after queueing: alarm, once a flood."""
        admission = self.admission
        logger.warning("command flood: commands are being dropped", extra={"fields": {
            "rate_per_s": admission.rate_per_s, "queue": admission.queue_size}})
        event = DomainEvent("command_flood", self._service.now(), data={
            "rate_per_s": admission.rate_per_s, "queue_size": admission.queue_size,
            "dropped": admission.stats.dropped,
        })
        try:
            self._service.apply(lambda: [event])
        except Exception:
            logger.exception("could not record a command flood")

    def _handle_command(self, message: mqtt.MQTTMessage) -> None:
        name = self._topics.command_name(message.topic)
        if name is None:
            logger.warning("message on an unexpected topic ignored",
                           extra={"fields": {"topic": message.topic[:200]}})
            reply = c.Reply(
                id=None, ok=False, command=None,
                error=c.ErrorBody(code="wrong_topic", message=f"not a command topic of locker "
                                  f"{self._topics.locker_id}: {message.topic[:200]}",
                                  field="topic"),
            )
            self._publish_model(self._topics.replies, reply)
            return
        answer = self._processor.handle(
            name, bytes(message.payload), retained=bool(message.retain)
        )
        response_topic = None
        reply_properties = None
        props = getattr(message, "properties", None)
        if self._v5 and props is not None and getattr(props, "ResponseTopic", None):
            response_topic = props.ResponseTopic
            reply_properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            correlation = getattr(props, "CorrelationData", None)
            if correlation is not None:
                reply_properties.CorrelationData = correlation
        asked = [t for t in (response_topic, answer.reply_to) if t]
        topic = next((t for t in asked if self._topics.is_reply_topic(t)), self._topics.replies)
        if asked and topic == self._topics.replies and asked[0] != topic:
            logger.warning("reply topic refused; answered on the default topic",
                           extra={"fields": {"command": name, "asked": asked[0][:200]}})
        try:
            self._publish_model(topic, answer.reply, properties=reply_properties)
        except (ValueError, TypeError):  # a response topic paho cannot encode
            self.stats.count_error("publish")
            logger.warning("reply could not be published; sent to the default topic",
                           extra={"fields": {"command": name}})
            self._publish_model(self._topics.replies, answer.reply)
        finally:
            assert self._loop is not None
            self._reply_unsent = True
            self._loop.call_soon(self._send_replies)

    def _send_replies(self) -> None:
        """Write replies out now, ahead of what the drain publishes after a command.

        The reply is what the sender waits for; the events and retained state a command
        caused went out before it when the drain ran ahead of the socket's next write turn
        (measured: docs/benchmarks.md, issue 19). The drain calls this first, too. From the
        loop only, never inside a paho callback (paho's callback lock is not reentrant).
        """
        if not self._reply_unsent:
            return
        self._reply_unsent = False
        if self._socket is not None:
            self._safe(self._client.loop_write)()

    # ------------------------------------------------------------------ events

    def _on_committed(self, events: Sequence[StoredEvent]) -> None:
        for event in events:
            if event.compartment_id:
                self._dirty_compartments.add(event.compartment_id)
            self._newest_seq = max(self._newest_seq, event.seq)
        self._wake_drain.set()

    def _on_replay(self, from_seq: int) -> None:
        """Events from ``from_seq`` were queued again: move the cursor back to reach them."""
        self._last_handed_seq = min(self._last_handed_seq, from_seq - 1)
        self._newest_seq = float("inf")
        for seq in [s for s in self._inflight if s >= from_seq]:
            del self._inflight[seq]
        self._wake_drain.set()

    def _on_publish(
        self, client: mqtt.Client, _u: Any, mid: int, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._wake_drain.set()

    async def _drain_outbox(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands as the event fires, and this loop would never end (gh-86296)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake_drain.wait()
            self._wake_drain.clear()
            try:
                self._send_replies()
                if self._outbox_guard is not None:
                    self._outbox_guard.check()
                self._publish_dirty_compartments()
                self._settle_acknowledged()
                self._hand_over_pending()
            except Exception:
                self.stats.count_error("outbox")
                logger.exception("outbox drain step failed")

    def _settle_acknowledged(self) -> None:
        done = [i for i in self._inflight.values() if i.info.is_published()]
        if done:
            waiting = self._service.store.mark_published_soon(
                [i.seq for i in done], self._service.now())
            for item in done:
                del self._inflight[item.seq]
            self.stats.events_published += len(done)
            if waiting >= self._config.max_inflight:
                self._write_published()
            elif self._published_write is None and self._loop is not None:
                self._published_write = self._loop.call_later(
                    PUBLISHED_WRITE_S, self._write_published)
        stale = [
            i for i in self._inflight.values()
            if self._monotonic() - i.sent_at > ACK_TIMEOUT_S
        ]
        if stale and self.connected:
            logger.warning("events unacknowledged too long; sending again",
                           extra={"fields": {"count": len(stale)}})
            self._write_published()
            self._inflight.clear()
            self._last_handed_seq = 0
            self._newest_seq = float("inf")

    def _write_published(self) -> None:
        """Mark the acknowledged events published on disk now (see PUBLISHED_WRITE_S)."""
        if self._published_write is not None:
            self._published_write.cancel()
            self._published_write = None
        try:
            self._service.store.flush_published()
        except Exception:  # kept in memory and written with the next commit; at worst resent
            self.stats.count_error("outbox")
            logger.exception("could not mark acknowledged events published")

    def _hand_over_pending(self) -> None:
        if not self.connected:
            return
        room = self._config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        after = self._last_handed_seq
        if after >= self._newest_seq:
            return  # nothing committed since the last one handed over: no need to ask
        pending = self._service.store.pending_events(limit=room, after_seq=after)
        # fewer than asked for: that is all there is, until the next commit says otherwise
        self._newest_seq = (pending[-1].seq if pending else after) if len(pending) < room \
            else float("inf")
        for event in pending:
            if event.seq in self._inflight:
                continue
            payload = c.EventMessage.model_validate(
                event.as_message(self._topics.locker_id)
            ).model_dump_json()
            info = self._client.publish(self._topics.events, payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.stats.count_error("publish")
                logger.warning("publish refused by the client",
                               extra={"fields": {"rc": str(info.rc), "seq": event.seq}})
                return
            self._inflight[event.seq] = _Inflight(event.seq, info, self._monotonic())
            self._last_handed_seq = event.seq

    # ---------------------------------------------------------- state messages

    def _publish_dirty_compartments(self) -> None:
        if not self.connected or not self._dirty_compartments:
            return
        free = self._service.locker.free_by_size()
        if free != self._published_free:
            self._published_free = free
            self._publish_model(self._topics.status, self._status(online=True), retain=True)
        dirty, self._dirty_compartments = self._dirty_compartments, set()
        for compartment_id in sorted(dirty):
            if compartment_id in self._service.locker.compartments:
                self._publish_compartment(compartment_id)

    def _publish_compartment(self, compartment_id: str) -> None:
        self._publish_json(
            self._topics.compartment(compartment_id), self._view(compartment_id), retain=True
        )

    def _status(self, *, online: bool) -> c.StatusMessage:
        """``since``: online, the time of this connect (a later free count keeps it); offline,
        now (the clean stop, or the connect whose Last Will this is)."""
        locker = self._service.locker
        since = self._online_since if online and self._online_since else self._service.now()
        return c.StatusMessage(
            online=online,
            locker_id=locker.locker_id,
            version=__version__,
            boot_id=self._boot_id,
            since=since,
            in_service=locker.in_service,
            free_by_size=locker.free_by_size(),
        )

    async def _telemetry_timer(self) -> None:
        while True:
            await asyncio.sleep(self._telemetry_interval_s())
            if self.connected:
                try:
                    self._publish_model(self._topics.telemetry, self.telemetry(), qos=0)
                except Exception:
                    logger.exception("telemetry failed")

    def telemetry(self) -> c.TelemetryMessage:
        locker = self._service.locker
        errors = dict(self.stats.errors)
        errors["commands_refused"] = self._processor.refused
        errors["commands_dropped"] = self.admission.stats.dropped
        return c.TelemetryMessage(
            at=self._service.now(),
            uptime_s=round(self._monotonic() - self._started_at, 3),
            outbox_depth=self._service.store.outbox_depth(),
            free_by_size=locker.free_by_size(),
            errors=errors,
            mqtt_reconnects=max(0, self.stats.connects - 1),
            loop_lag_ms=round(self.loop_lag() * 1000, 1),
        )

    def _publish_model(
        self, topic: str, model: Any, *, retain: bool = False, qos: int = 1,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(
            topic, model.model_dump_json(), qos=qos, retain=retain, properties=properties
        )
        self._check_queued(info, topic)
        return info

    def _publish_json(
        self, topic: str, document: Mapping[str, Any], *, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(
            topic, json.dumps(document, default=str), qos=1, retain=retain
        )
        self._check_queued(info, topic)
        return info

    def _check_queued(self, info: mqtt.MQTTMessageInfo, topic: str) -> None:
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.stats.count_error("publish")
            logger.warning("publish refused by the client",
                           extra={"fields": {"rc": str(info.rc), "topic": topic[:200]}})

    async def _wait_published(self, info: mqtt.MQTTMessageInfo, timeout: float) -> None:
        deadline = self._monotonic() + timeout
        while not info.is_published() and self._monotonic() < deadline:
            await asyncio.sleep(0.02)

