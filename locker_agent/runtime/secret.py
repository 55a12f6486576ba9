"""The per-locker secret that keys every code hash, kept in its own file (mode 0600).

Losing it silently would turn every customer's code into a wrong code, so it is created only
for a locker that has no state yet; a missing secret beside existing state stops start-up.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

SECRET_BYTES = 32


class SecretError(Exception):
    """The secret file is missing, unreadable, too short or readable by others."""


def load_secret(path: Path, *, create: bool) -> bytes:
    """Read the secret at ``path``; with ``create``, make a new one if none exists."""
    if not path.exists():
        if not create:
            raise SecretError(
                f"{path} is missing but the locker already has state: every stored code would "
                "become invalid. Restore the file from backup, or move the state directory "
                "aside to start this locker afresh (and sync it from the cloud)."
            )
        return _create(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}") from exc
    if len(secret) < SECRET_BYTES:
        raise SecretError(f"{path} holds {len(secret)} bytes; a secret needs {SECRET_BYTES}")
    return secret


def _create(path: Path) -> bytes:
    secret = secrets.token_bytes(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the new name must survive a power cut too
    finally:
        os.close(directory)
    return secret
