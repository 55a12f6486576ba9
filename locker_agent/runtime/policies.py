"""The application's policies as the config sets them: lockouts, tokens, unlocks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from locker_agent.app.code_gate import CodeGate
from locker_agent.app.unlocks import UnlockPolicy
from locker_agent.config import AgentConfig, Policies
from locker_agent.contract.signing import SigningKeyError, load_public_key
from locker_agent.domain.lockout import LockoutPolicy
from locker_agent.runtime.errors import StartupError
from locker_agent.store import Store


def build_code_gate(
    config: AgentConfig, store: Store, *, clock_trusted: Callable[[], bool]
) -> CodeGate:
    """Lockouts from the policies, and the keys that signed QR tokens are checked against."""
    try:
        keys = [load_public_key(value) for value in config.tokens.public_keys]
    except (SigningKeyError, OSError, ValueError) as exc:
        raise StartupError(f"tokens.public_keys: {exc}") from exc
    customer, courier = lockout_policies(config.policies)
    return CodeGate(
        store.code_guard(),
        customer_policy=customer,
        courier_policy=courier,
        public_keys=keys,
        locker_id=config.locker_id,
        max_courier_validity_s=config.tokens.max_courier_validity_h * 3600,
        clock_trusted=clock_trusted,
    )


def operator_keys_from(config: AgentConfig) -> list[Ed25519PublicKey]:
    """The operator keys commands must be signed with; a key that cannot be read stops start."""
    keys = []
    for index, value in enumerate(config.operator_public_keys):
        try:
            keys.append(load_public_key(value))
        except (SigningKeyError, OSError, ValueError) as exc:
            raise StartupError(f"security.operator_public_keys[{index}]: {exc}") from exc
    return keys


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


def unlock_policy_from(policies: Policies) -> UnlockPolicy:
    return UnlockPolicy(
        pulse_s=policies.lock_pulse_ms / 1000,
        max_simultaneous=policies.max_simultaneous_unlocks,
        gap_s=policies.unlock_gap_ms / 1000,
        door_open_timeout_s=policies.door_open_timeout_s,
        door_left_open_alarm_s=policies.door_left_open_alarm_s,
    )
