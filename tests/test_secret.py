"""The per-locker secret file: created private, refused when exposed, short or missing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from locker_agent.domain.credentials import CodeHasher
from locker_agent.runtime.secret import SECRET_BYTES, SecretError, load_secret


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_with_mode_0600_and_32_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "secret"

    secret = load_secret(path, create=True)

    assert SECRET_BYTES == 32
    assert len(secret) == 32
    assert path.read_bytes() == secret
    assert mode_of(path) == 0o600
    CodeHasher(secret)  # good enough to key the code hashes
    other = load_secret(tmp_path / "other", create=True)
    assert other != secret


def test_loaded_back_identical(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    created = load_secret(path, create=True)

    assert load_secret(path, create=False) == created
    # create=True on an existing file reads it; it never replaces it
    assert load_secret(path, create=True) == created
    assert path.read_bytes() == created


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o610])
def test_refused_when_others_can_get_at_it(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret"
    load_secret(path, create=True)
    path.chmod(mode)

    with pytest.raises(SecretError) as info:
        load_secret(path, create=False)

    message = str(info.value)
    assert f"chmod 600 {path}" in message
    assert f"{mode:o}" in message


def test_refused_when_too_short(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x" * 31)
    path.chmod(0o600)

    with pytest.raises(SecretError, match=r"holds 31 bytes; a secret needs 32"):
        load_secret(path, create=False)


def test_longer_secret_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"y" * 64)
    path.chmod(0o600)

    assert load_secret(path, create=False) == b"y" * 64


def test_missing_without_create_is_an_error_that_explains_why(tmp_path: Path) -> None:
    path = tmp_path / "secret"

    with pytest.raises(SecretError) as info:
        load_secret(path, create=False)

    message = str(info.value)
    assert str(path) in message
    assert "missing" in message
    assert "code would become invalid" in message
    assert "Restore the file from backup" in message
    assert not path.exists()
