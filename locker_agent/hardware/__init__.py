"""The locker's hardware adapters: simulated, GPIO relays, RS485 lock boards, keypad, scanner.

Each implements a port of :mod:`locker_agent.app.ports.hardware` and is imported by the
composition root only, so importing this package never pulls in a hardware library.
"""
