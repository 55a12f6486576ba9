"""A client for the cloud side of the contract: send commands, read replies, watch lockers.

Used by ``locker-ctl`` and by the test suite, so both speak exactly the contract the agent
implements. It runs paho's network loop in its own thread (this is a tool, not the agent).
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from locker_agent.contract.messages import CODE_FIELDS
from locker_agent.contract.sealing import is_sealed, seal
from locker_agent.contract.signing import canonical_command, key_id, sign
from locker_agent.contract.transport import send_without_delay


class CtlError(Exception):
    """The broker could not be reached, or a reply did not come in time."""


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class ConnectionOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls: bool = False
    client_id: str = field(default_factory=lambda: f"locker-ctl-{uuid.uuid4().hex[:12]}")
    session_expiry_s: int | None = None
    """Keep a persistent session this long, so nothing is missed across a reconnect."""


class FleetClient:
    def __init__(self, options: ConnectionOptions, *, prefix: str = "lockers") -> None:
        self.options = options
        self.prefix = prefix
        self._v5 = options.protocol == "5"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else options.session_expiry_s is None,
        )
        if options.username:
            self._client.username_pw_set(options.username, options.password)
        if options.tls or options.ca_file:
            context = ssl.create_default_context(
                cafile=str(options.ca_file) if options.ca_file else None
            )
            if options.cert_file and options.key_file:
                context.load_cert_chain(str(options.cert_file), str(options.key_file))
            self._client.tls_set_context(context)
        self._reply_topic = f"{prefix}/_ctl/{options.client_id}/replies"
        self.signing_key: Ed25519PrivateKey | None = None
        """Signs every command sent with :meth:`command` unless it names another key."""
        self.locker_keys: Callable[[str], X25519PublicKey | None] = lambda _locker: None
        """A locker's enrolled identity key, to seal the codes sent to it (None: send clear)."""
        self._replies: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Received], None]] = []
        self._filters: list[str] = []
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._subacks: dict[int, list[Any]] = {}
        self._subacked = threading.Condition()
        self._client.on_connect = self._on_connect
        self._client.on_socket_open = lambda _c, _u, sock: send_without_delay(sock)
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: float = 10.0) -> FleetClient:
        properties = None
        persistent = self.options.session_expiry_s is not None
        if self._v5 and persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.options.session_expiry_s
        try:
            self._client.connect(
                self.options.host, self.options.port, keepalive=30,
                clean_start=not persistent if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=properties,
            )
        except OSError as exc:
            raise CtlError(
                f"cannot reach the broker at {self.options.host}:{self.options.port}: {exc}"
            ) from exc
        self._client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._connected.wait(0.05):
            if self._refusal is not None or time.monotonic() > deadline:
                self.close()
                where = f"{self.options.host}:{self.options.port}"
                if self._refusal is not None:
                    raise CtlError(f"the broker at {where} refused the connection: "
                                   f"{self._refusal}")
                raise CtlError(f"the broker at {where} did not accept the connection within "
                               f"{timeout:g} s")
        return self

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> FleetClient:
        return self.connect()

    def __exit__(self, *_: object) -> None:
        self.close()

    def subscribe(self, topic_filter: str, listener: Callable[[Received], None]) -> None:
        """Call ``listener`` (on paho's thread) for every message on ``topic_filter``."""
        self._listeners.append(lambda m: listener(m) if mqtt.topic_matches_sub(
            topic_filter, m.topic) else None)
        self._filters.append(topic_filter)
        result, _mid = self._client.subscribe(topic_filter, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise CtlError(f"subscribe to {topic_filter} failed: {result}")

    def subscribe_all(
        self,
        topic_filters: Sequence[str],
        listener: Callable[[Received], None],
        *,
        timeout: float = 10.0,
    ) -> None:
        """Subscribe to several filters at once and return when the broker has granted them.

        ``listener`` is called once per message (on paho's thread), however many of the
        filters it matches; a filter the broker refused raises :class:`CtlError`.
        """
        filters = list(topic_filters)

        def deliver(message: Received) -> None:
            if any(mqtt.topic_matches_sub(f, message.topic) for f in filters):
                listener(message)

        self._listeners.append(deliver)
        self._filters.extend(filters)  # renewed on every reconnect, as subscribe() does
        result, mid = self._client.subscribe([(f, 1) for f in filters])
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise CtlError(f"subscribe to {', '.join(filters)} failed: {result}")
        with self._subacked:
            if not self._subacked.wait_for(lambda: mid in self._subacks, timeout):
                raise CtlError(f"the broker did not confirm the subscription within {timeout:g} s")
            codes = self._subacks.pop(mid)
        refused = [f for f, code in zip(filters, codes, strict=False) if code.is_failure]
        if refused:
            raise CtlError(f"the broker refused the subscription to {', '.join(refused)}")

    # ------------------------------------------------------------------ commands

    def envelope(
        self,
        locker_id: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        command_id: str | None = None,
        expires_in: timedelta = timedelta(minutes=5),
        sign_with: Ed25519PrivateKey | None = None,
        seal_for: X25519PublicKey | None = None,
    ) -> dict[str, Any]:
        """A command as the contract wants it: codes sealed to ``seal_for`` (default: the
        locker's key from :attr:`locker_keys`), signed with ``sign_with`` (default:
        :attr:`signing_key`) naming its key id, when there are such keys."""
        sign_with = sign_with or self.signing_key
        seal_for = seal_for or self.locker_keys(locker_id)
        document: dict[str, Any] = {
            "id": command_id or str(uuid.uuid4()),
            "expires_at": (datetime.now(UTC) + expires_in).isoformat(),
            "args": dict(args or {}),
        }
        if not self._v5:
            document["reply_to"] = self._reply_topic
        return seal_and_sign(locker_id, name, document, sign_with=sign_with, seal_for=seal_for)

    def send(
        self,
        locker_id: str,
        name: str,
        document: Mapping[str, Any] | bytes,
        *,
        timeout: float = 10.0,
        retain: bool = False,
    ) -> dict[str, Any]:
        """Publish a command (a prepared envelope, or raw bytes) and wait for its reply."""
        if isinstance(document, bytes):
            payload, command_id = document, None
        else:
            payload, command_id = json.dumps(document).encode(), str(document.get("id"))
        correlation = command_id or str(uuid.uuid4())
        inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._replies[correlation] = inbox
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = self._reply_topic
            properties.CorrelationData = correlation.encode()
        topic = f"{self.prefix}/{locker_id}/cmd/{name}"
        try:
            if not self._connected.wait(timeout):
                raise CtlError("not connected to the broker")
            info = self._client.publish(
                topic, payload, qos=1, retain=retain, properties=properties
            )
            info.wait_for_publish(timeout)
            return inbox.get(timeout=timeout)
        except (RuntimeError, ValueError) as exc:
            raise CtlError(f"could not send {name} to {locker_id}: {exc}") from None
        except queue.Empty:
            raise CtlError(f"no reply from {locker_id} to {name} within {timeout:g} s") from None
        finally:
            with self._lock:
                self._replies.pop(correlation, None)

    def command(
        self,
        locker_id: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float = 10.0,
        sign_with: Ed25519PrivateKey | None = None,
        expires_in: timedelta = timedelta(minutes=5),
    ) -> dict[str, Any]:
        """Send a command and wait for its reply: signed with ``sign_with`` (default: the
        client's :attr:`signing_key`), its codes sealed to the locker's enrolled key."""
        document = self.envelope(
            locker_id, name, args, sign_with=sign_with, expires_in=expires_in
        )
        return self.send(locker_id, name, document, timeout=timeout)

    # ------------------------------------------------------------------ fleet view

    def collect(self, topic_filter: str, seconds: float) -> list[Received]:
        """Everything arriving on ``topic_filter`` (retained messages first) for a while."""
        seen: list[Received] = []
        self.subscribe(topic_filter, seen.append)
        time.sleep(seconds)
        return list(seen)

    # ---------------------------------------------------------------- callbacks

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            return
        client.subscribe(self._reply_topic, qos=1)
        for topic_filter in self._filters:  # a broker that lost our session forgot them
            client.subscribe(topic_filter, qos=1)
        self._connected.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_disconnect(self, client: mqtt.Client, *_: Any) -> None:
        self._connected.clear()

    def _on_subscribe(
        self, client: mqtt.Client, _u: Any, mid: int, codes: list[Any], _p: Any
    ) -> None:
        with self._subacked:
            self._subacks[mid] = list(codes)
            self._subacked.notify_all()

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(message.topic, bytes(message.payload), bool(message.retain),
                            time.monotonic())
        if message.topic == self._reply_topic:
            self._route_reply(message, received)
            return
        for listener in list(self._listeners):
            listener(received)

    def _route_reply(self, message: mqtt.MQTTMessage, received: Received) -> None:
        try:
            reply = received.json()
        except ValueError:
            return
        keys = []
        props = getattr(message, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        if correlation:
            keys.append(bytes(correlation).decode(errors="replace"))
        if isinstance(reply, dict) and reply.get("id"):
            keys.append(str(reply["id"]))
        with self._lock:
            for key in keys:
                target = self._replies.get(key)
                if target is not None:
                    target.put(reply)
                    return


def seal_and_sign(
    locker_id: str,
    name: str,
    document: Mapping[str, Any],
    *,
    sign_with: Ed25519PrivateKey | None,
    seal_for: X25519PublicKey | None,
) -> dict[str, Any]:
    """``document`` (an envelope) with its code fields sealed to ``seal_for`` and signed with
    ``sign_with`` (naming the key), when they are given; codes already sealed stay as they are."""
    result = dict(document)
    args = result.get("args")
    if seal_for is not None and isinstance(args, dict):
        args = dict(args)
        for field in CODE_FIELDS.get(name, ()):
            value = args.get(field)
            if isinstance(value, str) and not is_sealed(value):
                args[field] = seal(value, seal_for, locker_id=locker_id, field=field)
        result["args"] = args
    if sign_with is not None:
        result["key_id"] = key_id(sign_with)
        message = canonical_command(
            locker_id, name, result.get("id"), result.get("expires_at"), result.get("args") or {},
            result["key_id"],
        )
        result["signature"] = sign(sign_with, message)
    return result
