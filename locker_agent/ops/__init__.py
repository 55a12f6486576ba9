"""Installer and operator tools run at the locker: doctor, hw-test, hw-monitor."""
