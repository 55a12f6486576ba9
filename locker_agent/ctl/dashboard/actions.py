"""What an operator can do from the page, as commands of the contract.

Each action becomes one command sent through :class:`~locker_agent.ctl.client.FleetClient`
(signed when an operator key is configured), and the locker's reply comes back with a
sentence an operator can act on, most of all when the locker refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from locker_agent.contract.messages import SIGNED_COMMANDS, Identifier, Reason
from locker_agent.ctl.client import CtlError, FleetClient

ACTION_EXPIRY = timedelta(minutes=2)
"""Short: a door-opening command must not wait long at the broker for an offline locker."""

REFUSALS: Mapping[str, str] = {
    "remote_open_refused": "The locker refused to open remotely: its remote-open policy "
    "allows no more openings right now (or remote opening is locked until an operator clears "
    "the alarm). Nothing was opened.",
    "bad_signature": "The locker refused the command: it is not signed with the operator key "
    "the locker trusts. Start the dashboard with --sign-key.",
    "out_of_service": "The locker is out of service.",
    "unknown_compartment": "The locker has no such compartment.",
    "invalid_state": "The compartment cannot do that now (a door may already be opening).",
    "expired": "The command expired before the locker got it; nothing was done.",
    "invalid": "The locker found the request invalid.",
}


class OpenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    compartment_id: Identifier
    reason: Reason


class ServiceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    in_service: bool
    compartment_id: Identifier | None = None
    reason: Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)] | None = (
        Field(default=None, description="required when taking out of service")
    )


class Commander(Protocol):
    def __call__(self, locker_id: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Send one command and return the locker's reply; CtlError if none came."""


def fleet_commander(client: FleetClient, *, sign_with: Ed25519PrivateKey | None,
                    timeout: float) -> Commander:
    def send(locker_id: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        key = sign_with if name in SIGNED_COMMANDS else None
        return client.command(locker_id, name, args, timeout=timeout, sign_with=key,
                              expires_in=ACTION_EXPIRY)
    return send


def open_command(request: OpenRequest, operator: str) -> tuple[str, dict[str, Any]]:
    return "open", {"compartment_id": request.compartment_id,
                    "reason": request.reason, "operator": operator}


def service_command(request: ServiceRequest, operator: str) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"in_service": request.in_service}
    if request.compartment_id is not None:
        args["compartment_id"] = request.compartment_id
    if request.reason:
        suffix = f" ({operator})"
        # the contract's reason is at most 200 characters, the operator's name included
        args["reason"] = request.reason[: max(200 - len(suffix), 1)] + suffix
    elif not request.in_service:
        raise ValueError("say why it goes out of service")
    return "set_service", args


def outcome(locker_id: str, name: str, send: Commander, args: Mapping[str, Any]
            ) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for the page: the reply, and a sentence about it."""
    try:
        reply = send(locker_id, name, args)
    except CtlError as exc:
        return 504, {"ok": False, "command": name, "reply": None,
                     "message": f"No answer from {locker_id}: {exc}. Is it online?"}
    if reply.get("ok") is True:
        return 200, {"ok": True, "command": name, "reply": reply,
                     "message": f"{locker_id} did it: {name}."}
    error = reply.get("error") or {}
    code = str(error.get("code", "error"))
    detail = str(error.get("message", ""))
    sentence = REFUSALS.get(code, "The locker refused.")
    return 200, {"ok": False, "command": name, "reply": reply, "code": code,
                 "message": f"{sentence} ({code}: {detail})" if detail else sentence}
