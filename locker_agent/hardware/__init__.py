"""The locker's hardware behind narrow interfaces keyed by compartment id.

Adapters live in their own modules (``simulated``, ``console``...) and are imported by the
composition root only, so importing this package never pulls in a hardware library.
"""

from locker_agent.hardware.interfaces import (
    MAX_PULSE_S,
    CodeEntry,
    CodeInput,
    CodeSubmitter,
    DoorListener,
    DoorSensors,
    DoorStateTracker,
    HardwareError,
    LockDriver,
    validate_pulse,
)

__all__ = [
    "MAX_PULSE_S",
    "CodeEntry",
    "CodeInput",
    "CodeSubmitter",
    "DoorListener",
    "DoorSensors",
    "DoorStateTracker",
    "HardwareError",
    "LockDriver",
    "validate_pulse",
]
