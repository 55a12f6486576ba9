"""The broker fixtures do what the cloud-link tests rely on, checked with a real paho client."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support import mosquitto as mosquitto_module
from tests.support.mosquitto import (
    BrokerError,
    BrokerFactory,
    MosquittoBroker,
    find_program,
    mosquitto,
    mosquitto_factory,
    password_file,
)
from tests.support.tls import ClientCert, TlsFiles, make_rogue_client, make_tls

__all__ = ["mosquitto", "mosquitto_factory"]  # fixtures used here, imported for pytest

WAIT = 5.0
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Probe:
    """A paho MQTT 5 client on its own network thread that records what happens to it."""

    client: mqtt.Client
    answered: threading.Event = field(default_factory=threading.Event)
    """Set by a CONNACK, a refusal or a failed connection attempt."""
    disconnected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    connack: ReasonCode | None = None
    session_present: bool | None = None
    failure: str | None = None

    def wait_connected(self) -> None:
        """Wait for a successful CONNACK; fail the test on a refusal or silence."""
        assert self.answered.wait(WAIT), "no CONNACK"
        assert self.connack is not None and not self.connack.is_failure, self.describe()

    def wait_refused(self) -> None:
        """Wait for the attempt to end without a successful CONNACK."""
        assert self.answered.wait(WAIT), "neither accepted nor refused"
        assert self.connack is None or self.connack.is_failure, self.describe()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=qos)
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(WAIT)

    def receive(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def describe(self) -> str:
        return f"connack={self.connack} failure={self.failure}"


def _start_probe(
    broker: MosquittoBroker,
    client_id: str,
    *,
    tls: TlsFiles | None = None,
    client_cert: ClientCert | None = None,
    username: str | None = None,
    password: str | None = None,
    clean_start: bool = True,
    session_expiry: int = 0,
) -> Probe:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,  # a probe reports a lost connection, it never retries
    )
    result = Probe(client)

    def on_connect(
        _c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: object
    ) -> None:
        result.connack, result.session_present = rc, flags.session_present
        result.answered.set()

    def on_disconnect(
        _c: mqtt.Client, _u: object, _f: mqtt.DisconnectFlags, rc: ReasonCode, _p: object
    ) -> None:
        result.failure = result.failure or str(rc)
        result.disconnected.set()
        result.answered.set()

    def on_connect_fail(_c: mqtt.Client, _u: object) -> None:
        result.failure = result.failure or "connect failed"
        result.answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_connect_fail = on_connect_fail
    client.on_subscribe = lambda *_: result.subscribed.set()
    client.on_message = lambda _c, _u, message: result.messages.put(message)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca_file),
            certfile=str(client_cert.cert) if client_cert else None,
            keyfile=str(client_cert.key) if client_cert else None,
        )
    if username is not None:
        client.username_pw_set(username, password)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session_expiry
    try:
        client.connect(broker.host, broker.port, clean_start=clean_start, properties=properties)
    except OSError as error:  # ssl.SSLError included: a refusal during the TLS handshake
        result.failure = repr(error)
        result.disconnected.set()
        result.answered.set()
        return result
    client.loop_start()
    return result


ProbeFactory = Callable[..., Probe]


@pytest.fixture
def connect() -> Iterator[ProbeFactory]:
    """Start connecting a client (see ``_start_probe``); all are closed after the test."""
    made: list[Probe] = []

    def start(broker: MosquittoBroker, client_id: str, **options: Any) -> Probe:
        made.append(_start_probe(broker, client_id, **options))
        return made[-1]

    yield start
    for made_probe in made:
        made_probe.close()


def test_a_client_subscribes_publishes_and_receives(
    mosquitto: MosquittoBroker, connect: ProbeFactory
) -> None:
    client = connect(mosquitto, "roundtrip")
    client.wait_connected()
    client.subscribe("locker/test/#")
    client.publish("locker/test/events", b"hello")
    message = client.receive()
    assert (message.topic, message.payload, message.qos) == ("locker/test/events", b"hello", 1)


def test_restart_keeps_the_port_and_clients_reconnect(
    mosquitto: MosquittoBroker, connect: ProbeFactory
) -> None:
    port = mosquitto.port
    connect(mosquitto, "before").wait_connected()
    mosquitto.restart()
    assert mosquitto.port == port and mosquitto.running
    connect(mosquitto, "after").wait_connected()


def test_kill_is_seen_by_a_connected_client(
    mosquitto: MosquittoBroker, connect: ProbeFactory
) -> None:
    client = connect(mosquitto, "victim")
    client.wait_connected()
    mosquitto.kill()
    assert not mosquitto.running
    assert client.disconnected.wait(WAIT)
    mosquitto.restart()  # fine after a kill
    assert mosquitto.running


def test_queued_messages_survive_a_kill_once_saved(
    mosquitto: MosquittoBroker, connect: ProbeFactory
) -> None:
    """A persistent session's queue outlives a crash if the broker saved after queueing."""
    offline = connect(mosquitto, "locker-1", clean_start=False, session_expiry=3600)
    offline.wait_connected()
    offline.subscribe("locker/1/cmd/#")
    offline.close()
    sender = connect(mosquitto, "cloud")
    sender.wait_connected()
    for n in range(3):
        sender.publish("locker/1/cmd/unlock", f"cmd-{n}".encode())

    mosquitto.save()
    mosquitto.kill()
    mosquitto.start()

    back = connect(mosquitto, "locker-1", clean_start=False, session_expiry=3600)
    back.wait_connected()
    assert back.session_present is True
    assert [back.receive().payload for _ in range(3)] == [b"cmd-0", b"cmd-1", b"cmd-2"]


def test_only_sessions_last_connected_without_clean_start_survive_a_restart(
    mosquitto: MosquittoBroker, connect: ProbeFactory
) -> None:
    """Mosquitto 2.0.11 saves a session only if its latest CONNECT had clean start = 0.

    Both sessions below have an hour's expiry and live on across a reconnect; only the one
    made with clean start = 0 is in the database, so only it survives even a clean restart.
    """
    for client_id, clean_start in (("made-clean", True), ("made-resumable", False)):
        client = connect(mosquitto, client_id, clean_start=clean_start, session_expiry=3600)
        client.wait_connected()
        client.subscribe(f"locker/{client_id}/cmd/#")
        client.close()
    mosquitto.restart()
    present = {}
    for client_id in ("made-clean", "made-resumable"):
        back = connect(mosquitto, client_id, clean_start=False, session_expiry=3600)
        back.wait_connected()
        present[client_id] = back.session_present
    assert present == {"made-clean": False, "made-resumable": True}


def test_first_start_moves_to_another_port_when_its_port_was_taken(
    tmp_path: Path, connect: ProbeFactory
) -> None:
    broker = MosquittoBroker(tmp_path / "broker")
    with socket.socket() as thief:
        thief.bind((broker.host, broker.port))
        thief.listen()
        taken = broker.port
        with broker:
            assert broker.port != taken
            connect(broker, "moved").wait_connected()


def test_a_given_port_is_never_replaced(tmp_path: Path) -> None:
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        thief.listen()
        port = thief.getsockname()[1]
        broker = MosquittoBroker(tmp_path / "broker", port=port)
        with pytest.raises(BrokerError, match="Address already in use"):
            broker.start()
    assert not broker.running and broker.port == port


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


def test_tls_keys_are_private(tls_files: TlsFiles) -> None:
    for key in (tls_files.server_key, tls_files.client_key):
        assert key.stat().st_mode & 0o777 == 0o600


def test_tls_with_a_client_certificate_from_the_ca_connects(
    mosquitto_factory: BrokerFactory, tls_files: TlsFiles, connect: ProbeFactory
) -> None:
    broker = mosquitto_factory(tls=tls_files, require_certificate=True)
    own = ClientCert(tls_files.client_cert, tls_files.client_key)
    client = connect(broker, "locker-tls", tls=tls_files, client_cert=own)
    client.wait_connected()
    client.subscribe("locker/tls/#")
    client.publish("locker/tls/x", b"secret")
    assert client.receive().payload == b"secret"
    assert "as locker-tls (p5, c1, k60, u'locker-test')" in broker.log_text()  # CN as username


def test_tls_without_a_client_certificate_is_refused(
    mosquitto_factory: BrokerFactory, tls_files: TlsFiles, connect: ProbeFactory
) -> None:
    broker = mosquitto_factory(tls=tls_files, require_certificate=True)
    connect(broker, "no-cert", tls=tls_files).wait_refused()
    assert "peer did not return a certificate" in broker.log_text()


def test_tls_with_a_rogue_client_certificate_is_refused(
    mosquitto_factory: BrokerFactory, tls_files: TlsFiles, connect: ProbeFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(tls=tls_files, require_certificate=True)
    rogue = make_rogue_client(tmp_path / "rogue")
    connect(broker, "rogue", tls=tls_files, client_cert=rogue).wait_refused()
    assert "certificate verify failed" in broker.log_text()


def test_password_file_lets_the_right_password_in_and_refuses_others(
    mosquitto_factory: BrokerFactory, tmp_path: Path, connect: ProbeFactory
) -> None:
    passwords = password_file(tmp_path / "passwd", {"locker-1": "right", "cloud": "other"})
    broker = mosquitto_factory(password_file=passwords)

    connect(broker, "good", username="locker-1", password="right").wait_connected()
    connect(broker, "cloud", username="cloud", password="other").wait_connected()
    wrong = connect(broker, "bad", username="locker-1", password="wrong")
    wrong.wait_refused()
    assert wrong.connack is not None
    assert wrong.connack.getName() in {"Bad user name or password", "Not authorized"}
    connect(broker, "anonymous").wait_refused()


def test_persistence_off_writes_no_database(mosquitto_factory: BrokerFactory) -> None:
    broker = mosquitto_factory(persistence=False)
    broker.stop()
    assert not broker.db_path.exists()
    assert "persistence false" in broker.conf_path.read_text()


def test_a_missing_mosquitto_fails_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(mosquitto_module, "SEARCH_DIRS", ())
    with pytest.raises(pytest.fail.Exception, match="apt-get install mosquitto"):
        find_program("mosquitto")


def test_a_stopped_broker_leaves_no_process(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    pid = broker.pid
    assert pid is not None
    broker.stop()
    broker.stop()  # idempotent
    assert not broker.running and broker.pid is None
    assert not Path(f"/proc/{pid}").exists()


def test_a_broker_left_running_dies_with_the_interpreter(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.support.mosquitto import MosquittoBroker\n"
        "broker = MosquittoBroker(Path(sys.argv[1]))\n"
        "broker.start()\n"
        "print(broker.pid)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "broker")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert not Path(f"/proc/{int(result.stdout)}").exists()
