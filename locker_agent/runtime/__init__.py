"""Running the daemon: the composition root, systemd notification, logging and secrets.

Only this room builds adapters; everything below it is handed what it needs.
"""
