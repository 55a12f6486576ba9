"""The locker domain: what a locker is and does, free of I/O, hardware and cloud."""
