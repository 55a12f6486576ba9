"""``[mqtt]``: the broker, its credentials and the cloud link's limits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from locker_agent.config.fields import Section, protocol_name
from locker_agent.config.problems import Problem, Problems


class MqttConfig(Section):
    enabled: bool = True
    host: str | None = Field(default=None, min_length=1)
    """Broker to connect to; None: the agent starts its own local broker."""
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(protocol_name)] = "5"
    client_id: str | None = Field(default=None, min_length=1)
    """None: ``locker-<locker_id>``; see :attr:`AgentConfig.mqtt_client_id`."""
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_prefix: str = "lockers"
    keepalive_s: int = Field(default=60, ge=5, le=3600)
    operator_public_key: str | None = Field(default=None, min_length=1)
    """One more operator key (base64 of 32 bytes, or a PEM file), as older configs set it;
    prefer ``[security] operator_public_keys``, which holds several."""
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=120.0, gt=0, le=3600)
    """Reconnect backoff doubles from min to max, with equal jitter, so a fleet does not
    stampede a restarted broker."""
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0, le=2**32 - 1)
    """MQTT 5 session expiry: the broker keeps QoS 1 commands for an offline locker this long."""
    max_inflight: int = Field(default=200, ge=1, le=1000)
    """Events published and awaiting the broker's PUBACK at once. Measured: 100,000 queued
    events drain in 17.5 s at 200, 47 s at 20 (docs/benchmarks.md)."""
    command_horizon_h: float = Field(default=168, gt=0, le=24 * 30)
    """A command's expires_at may lie at most this far ahead; command ids are remembered as
    long, so a command can never be applied twice while it is still valid."""
    max_commands_per_s: float = Field(default=20, gt=0, le=1000)
    """Commands handled per second, all topics together; more wait in a queue of
    command_queue_size, and beyond that are dropped unanswered (a command_flood alarm says
    so). A cloud sends a few a second; a flood cannot take the locker's time from its doors."""
    command_burst: int = Field(default=50, ge=1, le=10_000)
    command_queue_size: int = Field(default=200, ge=0, le=10_000)
    max_outbox_events: int = Field(default=200_000, ge=1000)
    """Unpublished events kept while offline. At 80 % an alarm is raised; beyond it the oldest
    are dropped and an ``outbox_overflow`` event says exactly which seqs were lost."""

    @field_validator("topic_prefix")
    @classmethod
    def _check_topic_prefix(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if "+" in value or "#" in value:
            raise ValueError("must not contain the MQTT wildcards '+' or '#'")
        if value.startswith("/") or value.endswith("/"):
            raise ValueError("must not start or end with '/'")
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> MqttConfig:
        problems = []
        if self.cert_file is not None and self.key_file is None:
            problems.append(Problem(("key_file",), "required when cert_file is set"))
        if self.key_file is not None and self.cert_file is None:
            problems.append(Problem(("cert_file",), "required when key_file is set"))
        if not self.tls:
            for name in ("ca_file", "cert_file", "key_file"):
                value = getattr(self, name)
                if value is not None:
                    problems.append(Problem((name,), "set but tls = false", str(value)))
        if self.protocol == "3.1.1" and self.password is not None and self.username is None:
            problems.append(Problem(("username",), "required with a password in MQTT 3.1.1"))
        if problems:
            raise Problems(problems)
        return self
