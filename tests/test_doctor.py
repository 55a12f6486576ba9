"""``locker-agent doctor`` against real files, a real SQLite database and a real broker."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from locker_agent.config import load_config
from locker_agent.ops.doctor import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, run_doctor
from locker_agent.runtime.state import compartments_from, open_store
from tests.conftest import ConfigWriter
from tests.support.mosquitto import (  # noqa: F401 - fixtures
    BrokerFactory,
    MosquittoBroker,
    free_port,
    mosquitto,
    mosquitto_factory,
)
from tests.support.tls import TlsFiles, make_tls

pytestmark = pytest.mark.usefixtures("clean_env")


def doctor(config: Path) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_doctor(config, out=lines.append)
    return code, lines


def line(lines: list[str], status: str, name: str) -> str:
    found = [text for text in lines if text.split()[:2] == [status, name]]
    assert found, f"no {status} {name} line in:\n" + "\n".join(lines)
    return found[0]


def first_start(config_path: Path) -> None:
    """What the agent's first start leaves behind: the database (with a locker) and secret."""
    config = load_config(config_path)
    store, hasher, _ = open_store(config)
    try:
        store.load(config.locker_id, compartments_from(config), hasher, sizes=config.sizes)
    finally:
        store.close()


def mqtt_to(broker: MosquittoBroker, **extra: object) -> dict[str, object]:
    return {"enabled": True, "host": broker.host, "port": broker.port, **extra}


def tls_options(files: TlsFiles) -> dict[str, object]:
    return {
        "tls": True,
        "ca_file": str(files.ca_file),
        "cert_file": str(files.client_cert),
        "key_file": str(files.client_key),
    }


def test_a_good_locker_passes_everything(
    write_config: ConfigWriter, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    config = write_config(mqtt=mqtt_to(mosquitto))
    first_start(config)
    code, lines = doctor(config)
    assert code == EXIT_OK, "\n".join(lines)
    assert [text.split()[1] for text in lines[:-1]] == [
        "config", "state_dir", "database", "secret", "hardware", "commands", "clock", "broker",
        "api",
    ]
    assert all(text.startswith("PASS") for text in lines[:-1]), "\n".join(lines)
    assert "quick_check ok, schema version" in line(lines, "PASS", "database")
    assert "every command but ping must be signed" in line(lines, "PASS", "commands")
    assert f"{mosquitto.host}:{mosquitto.port} accepts TCP" in line(lines, "PASS", "broker")
    assert "api.enabled = false" in line(lines, "PASS", "api")
    assert lines[-1] == "0 failed, 0 warnings, 9 passed"


def test_doctor_fails_a_locker_anyone_on_the_broker_could_command(
    write_config: ConfigWriter, mosquitto: MosquittoBroker  # noqa: F811
) -> None:
    config = write_config(mqtt=mqtt_to(mosquitto), security={
        "operator_public_keys": [], "allow_unsigned_commands": True})
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    assert "anyone on the broker can command" in line(lines, "FAIL", "commands")
    config = write_config(mqtt=mqtt_to(mosquitto), security={"operator_public_keys": []})
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    assert "no operator key: the locker will not start" in line(lines, "FAIL", "commands")
    config = write_config(mqtt=mqtt_to(mosquitto), security={
        "operator_public_keys": ["/nonexistent/operator.pub.pem"]})
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    assert "operator_public_keys[0]" in line(lines, "FAIL", "commands")


def test_a_fresh_locker_only_warns(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config(mqtt={"enabled": False})
    code, lines = doctor(config)
    assert code == EXIT_OK, "\n".join(lines)
    assert "first start creates it" in line(lines, "WARN", "state_dir")
    assert "no database yet" in line(lines, "WARN", "database")
    assert "first start creates it" in line(lines, "WARN", "secret")
    assert not (tmp_path / "state").exists(), "doctor must not create anything"


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path, write_config: ConfigWriter) -> None:
    config = write_config()
    config.write_text(config.read_text().replace('backend = "simulated"', 'backend = "usb"'))
    code, lines = doctor(config)
    assert code == EXIT_CONFIG
    assert lines[0].startswith("FAIL  config")
    assert "hardware.backend = 'usb'" in lines[0]
    assert "locker-agent check-config" in lines[-1]


def test_a_missing_config_file(tmp_path: Path) -> None:
    code, lines = doctor(tmp_path / "nowhere.toml")
    assert code == EXIT_CONFIG
    assert "file not found" in lines[0]


def test_a_secret_readable_by_others_fails(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config()
    first_start(config)
    secret = tmp_path / "state" / "locker.secret"
    os.chmod(secret, 0o644)
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    found = line(lines, "FAIL", "secret")
    assert "mode 0644" in found and f"fix: chmod 600 {secret}" in found


def test_a_corrupt_database_fails(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config()
    first_start(config)
    database = tmp_path / "state" / "locker.db"
    database.write_bytes(b"this is not SQLite " * 512)
    before = sorted(p.name for p in database.parent.iterdir())
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    found = line(lines, "FAIL", "database")
    assert "is damaged" in found and "fix: restore it from a backup" in found
    assert sorted(p.name for p in database.parent.iterdir()) == before


def test_a_lost_database_fails(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config()
    first_start(config)
    (tmp_path / "state" / "locker.db").unlink()
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    found = line(lines, "FAIL", "database")
    assert "has run before" in found and "out of service" in found
    line(lines, "PASS", "secret")


def test_a_database_from_another_locker_fails(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    first_start(write_config(name="other.toml", locker_id="other-locker"))
    code, lines = doctor(write_config())
    assert code == EXIT_FAILURE
    assert "belongs to locker 'other-locker'" in line(lines, "FAIL", "database")


def test_a_database_in_use_is_read_without_harm(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    """While the agent runs (a -wal beside the file) the doctor still reads it."""
    config = write_config()
    first_start(config)
    agent_config = load_config(config)
    store, _, _ = open_store(agent_config)
    try:
        store.execute_sql("SELECT 1")  # the agent holds a connection: -wal and -shm exist
        assert (tmp_path / "state" / "locker.db-wal").exists()
        code, lines = doctor(config)
        assert code == EXIT_OK, "\n".join(lines)
        line(lines, "PASS", "database")
    finally:
        store.close()


def test_a_broker_that_is_down_fails(write_config: ConfigWriter) -> None:
    config = write_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port()})
    first_start(config)
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    found = line(lines, "FAIL", "broker")
    assert "cannot connect to 127.0.0.1:" in found and "fix: check that the broker is up" in found


def test_tls_to_a_real_broker(
    write_config: ConfigWriter, mosquitto_factory: BrokerFactory, tmp_path: Path  # noqa: F811
) -> None:
    files = make_tls(tmp_path / "tls")
    broker = mosquitto_factory(tls=files, require_certificate=True)
    config = write_config(mqtt=mqtt_to(broker, **tls_options(files)))
    first_start(config)
    code, lines = doctor(config)
    assert code == EXIT_OK, "\n".join(lines)
    line(lines, "PASS", "tls_ca")
    # The test certificates live two days: well within the 30-day renewal warning.
    assert "renew it" in line(lines, "WARN", "tls_cert")
    assert "TLS handshake ok" in line(lines, "PASS", "broker")


def test_a_missing_ca_file_fails(
    write_config: ConfigWriter, mosquitto_factory: BrokerFactory, tmp_path: Path  # noqa: F811
) -> None:
    files = make_tls(tmp_path / "tls")
    broker = mosquitto_factory(tls=files)
    options = tls_options(files) | {"ca_file": str(tmp_path / "tls" / "missing-ca.crt")}
    config = write_config(mqtt=mqtt_to(broker, **options))
    first_start(config)
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    found = line(lines, "FAIL", "tls_ca")
    assert "missing-ca.crt' does not exist" in found and "fix: install the file" in found
    assert "TLS files cannot be used" in line(lines, "FAIL", "broker")


def test_an_expired_client_certificate_fails(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    files = make_tls(tmp_path / "tls")
    cert, key = expired_client(files, tmp_path / "tls")
    options = tls_options(files) | {"cert_file": str(cert), "key_file": str(key)}
    config = write_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port(),
                                **options})
    first_start(config)
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    found = line(lines, "FAIL", "tls_cert")
    assert "expired on" in found and "fix: issue the locker a new client certificate" in found


def test_a_broker_that_does_not_trust_the_ca_fails(
    write_config: ConfigWriter, mosquitto_factory: BrokerFactory, tmp_path: Path  # noqa: F811
) -> None:
    broker_files = make_tls(tmp_path / "broker-tls")
    our_files = make_tls(tmp_path / "our-tls")  # another CA entirely
    broker = mosquitto_factory(tls=broker_files)
    config = write_config(mqtt=mqtt_to(broker, **tls_options(our_files)))
    first_start(config)
    code, lines = doctor(config)
    assert code == EXIT_FAILURE
    assert "broker certificate not trusted" in line(lines, "FAIL", "broker")


def expired_client(files: TlsFiles, directory: Path) -> tuple[Path, Path]:
    """A client certificate from the test CA that expired yesterday."""
    ca_cert = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(
        (directory / "ca.key").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "locker-expired")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "expired.crt", directory / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path
