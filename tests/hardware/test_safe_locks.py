"""SafeLocks keeps the LockDriver contract of the driver it wraps.

Its safety rules have their own tests in tests/test_safety_rules.py.
"""

from __future__ import annotations

from locker_agent.app.ports.hardware import LockDriver
from locker_agent.app.safety import SafeLocks
from locker_agent.hardware.simulated import SimulatedLocker
from tests.hardware.contract import LockDriverContract


class TestSafeLocksOverTheSimulatedLocker(LockDriverContract):
    def make_lock_driver(self) -> LockDriver:
        simulated = SimulatedLocker(self.compartment_ids, auto_open_on_unlock=False)
        return SafeLocks(simulated, max_simultaneous=8, gap_s=0)
