"""``locker-ctl sign-token`` as a back end or an operator runs it: a real process, real keys."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from locker_agent.contract.signing import load_public_key
from locker_agent.contract.tokens import CourierToken, PickupToken, TokenRefused, TokenVerifier
from tests.conftest import BIN

CTL = [str(BIN / "locker-ctl")] if (BIN / "locker-ctl").exists() else [
    sys.executable, "-m", "locker_agent.ctl.cli"
]


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_CTL_")}
    result = subprocess.run(
        [*CTL, *args], capture_output=True, text=True, env={**clean, **(env or {})},
        timeout=60, stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ed25519PublicKey]:
    path = tmp_path_factory.mktemp("keys") / "tokens.pem"
    made = ctl("keygen", str(path))
    assert made.returncode == 0, made.stderr
    return path, load_public_key(made.stdout.strip())


def signed(*args: str, env: dict[str, str] | None = None) -> str:
    result = ctl("sign-token", *args, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "only the token goes to stdout"
    return lines[0]


def test_a_pickup_token_verifies_at_its_locker(key_pair: tuple[Path, Ed25519PublicKey]) -> None:
    path, public = key_pair
    before = datetime.now(UTC)
    text = signed("pickup", "--key", str(path), "--locker", "berlin-0042",
                  "--assignment", "p-2025-000123", "--valid-for", "72h")
    after = datetime.now(UTC)
    token = TokenVerifier([public], "berlin-0042").verify(text, now=after)
    assert isinstance(token, PickupToken)
    assert (token.locker_id, token.assignment_id) == ("berlin-0042", "p-2025-000123")
    assert before + timedelta(hours=72) - timedelta(seconds=1) <= token.expires_at
    assert token.expires_at <= after + timedelta(hours=72)
    with pytest.raises(TokenRefused) as refused:
        TokenVerifier([public], "berlin-0043").verify(text, now=after)
    assert refused.value.reason == "wrong_locker"


def test_a_courier_token_names_each_locker_and_its_window(
    key_pair: tuple[Path, Ed25519PublicKey],
) -> None:
    path, public = key_pair
    text = signed("courier", "--key", str(path), "--courier", "courier-17",
                  "--locker", "berlin-0042", "--locker", "berlin-0043", "--valid-for", "12h",
                  "--not-before", "2025-03-14T08:00:00+01:00")
    start = datetime(2025, 3, 14, 7, tzinfo=UTC)
    for locker in ("berlin-0042", "berlin-0043"):
        token = TokenVerifier([public], locker).verify(text, now=start + timedelta(hours=1))
        assert token == CourierToken(
            token_id=token.token_id, courier_id="courier-17",
            lockers=frozenset({"berlin-0042", "berlin-0043"}),
            not_before=start, expires_at=start + timedelta(hours=12),
        )
    with pytest.raises(TokenRefused) as refused:
        TokenVerifier([public], "berlin-0042").verify(text, now=start - timedelta(hours=1))
    assert refused.value.reason == "not_yet_valid"


def test_the_key_may_come_from_the_environment_and_ids_are_fresh(
    key_pair: tuple[Path, Ed25519PublicKey],
) -> None:
    path, public = key_pair
    args = ("pickup", "--locker", "L1", "--assignment", "A1", "--valid-for", "90m")
    env = {"LOCKER_CTL_SIGN_KEY": str(path)}
    verifier = TokenVerifier([public], "L1")
    now = datetime.now(UTC)
    first, second = (verifier.verify(signed(*args, env=env), now=now) for _ in range(2))
    assert first.token_id != second.token_id


@pytest.mark.parametrize(("args", "complaint"), [
    (("pickup", "--locker", "L1", "--assignment", "A1", "--valid-for", "1h"), "needs --key"),
    (("pickup", "--key", "{missing}", "--locker", "L1", "--assignment", "A1",
      "--valid-for", "1h"), "no such file"),
    (("pickup", "--key", "{junk}", "--locker", "L1", "--assignment", "A1",
      "--valid-for", "1h"), "not an unencrypted PEM private key"),
    (("pickup", "--key", "{key}", "--locker", "L 1", "--assignment", "A1",
      "--valid-for", "1h"), "cannot sign this token"),
    (("pickup", "--key", "{key}", "--locker", "L1", "--assignment", "A1",
      "--valid-for", "1w"), "a duration like"),
    (("pickup", "--key", "{key}", "--locker", "L1", "--assignment", "A1",
      "--valid-for", "40000d"), "1970-2106"),
    (("courier", "--key", "{key}", "--courier", "C1", "--locker", "L1",
      "--valid-for", "1h", "--not-before", "2025-03-14T08:00"), "needs a zone"),
    (("courier", "--key", "{key}", "--courier", "C1", "--valid-for", "1h"), "--locker"),
    (("pickup", "--key", "{key}", "--locker", "L1", "--valid-for", "1h"), "--assignment"),
    ((), "KIND"),
])
def test_bad_input_is_a_usage_error_with_no_token(
    key_pair: tuple[Path, Ed25519PublicKey], tmp_path: Path, args: tuple[str, ...],
    complaint: str,
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    files = {"{key}": str(key_pair[0]), "{junk}": str(junk),
             "{missing}": str(tmp_path / "missing.pem")}
    result = ctl("sign-token", *(files.get(arg, arg) for arg in args))
    assert result.returncode == 2
    assert result.stdout == ""
    assert complaint in result.stderr
