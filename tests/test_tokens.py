"""Signed QR tokens: genuine ones pass, anything else is refused with a reason, never a crash."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locker_agent.contract.tokens import (
    COURIER,
    FORMAT_VERSION,
    MAX_TOKEN_BYTES,
    MAX_TOKEN_CHARS,
    PICKUP,
    REFUSAL_REASONS,
    SIGNING_CONTEXT,
    TOKEN_PREFIX,
    CourierToken,
    PickupToken,
    TokenRefused,
    TokenVerifier,
    key_id,
    looks_like_token,
    new_token_id,
    sign_courier_token,
    sign_pickup_token,
)

LOCKER = "berlin-0042"
NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")

TYPICAL_PICKUP_CHARS = 190
"""A pickup token for a 12-character locker id and a 16-character assignment id stays within
this: a version 8 QR code at error correction M (49x49 modules, up to 221 such characters)."""

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")


def verifier(*keys: Ed25519PrivateKey, locker: str = LOCKER, **options: timedelta) -> TokenVerifier:
    return TokenVerifier([k.public_key() for k in keys or (KEY,)], locker, **options)


def pickup(**overrides: object) -> str:
    fields: dict[str, object] = {
        "locker_id": LOCKER, "assignment_id": "p-2025-000123",
        "expires_at": NOW + timedelta(hours=72),
    }
    fields.update(overrides)
    key = fields.pop("key", KEY)
    assert isinstance(key, Ed25519PrivateKey)
    return sign_pickup_token(key, **fields)  # type: ignore[arg-type]


def courier(**overrides: object) -> str:
    fields: dict[str, object] = {
        "courier_id": "courier-17", "lockers": [LOCKER, "berlin-0043"],
        "not_before": NOW - timedelta(hours=1), "expires_at": NOW + timedelta(hours=11),
    }
    fields.update(overrides)
    return sign_courier_token(KEY, **fields)  # type: ignore[arg-type]


def refusal(text: str, *, now: datetime = NOW, check: TokenVerifier | None = None) -> str:
    with pytest.raises(TokenRefused) as caught:
        (check or verifier()).verify(text, now=now)
    return caught.value.reason


def raw_of(token: str) -> bytes:
    body = token[len(TOKEN_PREFIX):]
    return base64.b32decode(body + "=" * (-len(body) % 8))


def text_of(raw: bytes) -> str:
    return TOKEN_PREFIX + base64.b32encode(raw).decode().rstrip("=")


def signed(message: bytes, key: Ed25519PrivateKey = KEY) -> str:
    """A token whose payload is ``message`` exactly, genuinely signed: tests the parser."""
    return text_of(message + key.sign(SIGNING_CONTEXT + message))


def header(kind: int = PICKUP, version: int = FORMAT_VERSION,
           key: Ed25519PrivateKey = KEY) -> bytes:
    return bytes([version, kind]) + bytes.fromhex(key_id(key)) + bytes(12)


def text_field(value: bytes) -> bytes:
    return bytes([len(value)]) + value


def stamp(moment: datetime) -> bytes:
    return struct.pack(">I", int(moment.timestamp()))


def pickup_body(locker: bytes = LOCKER.encode(), assignment: bytes = b"p-1") -> bytes:
    return stamp(NOW + timedelta(hours=1)) + text_field(locker) + text_field(assignment)


def courier_body(*lockers: bytes, count: int | None = None) -> bytes:
    lockers = lockers or (LOCKER.encode(),)
    return (stamp(NOW) + stamp(NOW + timedelta(hours=1)) + text_field(b"courier-17")
            + bytes([len(lockers) if count is None else count])
            + b"".join(text_field(locker) for locker in lockers))


# ---------------------------------------------------------------------------- round trip


def test_pickup_token_round_trip() -> None:
    expires = NOW + timedelta(hours=72)
    token_id = new_token_id()
    text = pickup(expires_at=expires, token_id=token_id)
    assert looks_like_token(text)
    assert verifier().verify(text, now=NOW) == PickupToken(
        token_id=token_id, locker_id=LOCKER, assignment_id="p-2025-000123", expires_at=expires,
    )


def test_courier_token_round_trip_names_every_locker() -> None:
    token = verifier().verify(courier(lockers=["b-3", LOCKER, "a-1", LOCKER]), now=NOW)
    assert token == CourierToken(
        token_id=token.token_id, courier_id="courier-17",
        lockers=frozenset({"a-1", "b-3", LOCKER}),
        not_before=NOW - timedelta(hours=1), expires_at=NOW + timedelta(hours=11),
    )
    assert verifier(locker="a-1").verify(courier(lockers=["b-3", LOCKER, "a-1"]), now=NOW)


def test_token_ids_are_random_96_bit_base32_strings() -> None:
    tokens = [verifier().verify(pickup(), now=NOW) for _ in range(50)]
    token_ids = {t.token_id for t in tokens}
    assert len(token_ids) == 50
    for token_id in token_ids:
        assert len(token_id) == 20 and set(token_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        assert len(base64.b32decode(token_id + "====")) == 12


def test_sub_second_times_round_towards_the_shorter_window() -> None:
    start, end = NOW + timedelta(microseconds=1), NOW + timedelta(hours=2, microseconds=999_999)
    text = courier(not_before=start, expires_at=end)
    token = verifier().verify(text, now=NOW + timedelta(hours=1))
    assert isinstance(token, CourierToken)
    assert (token.not_before, token.expires_at) == (NOW + timedelta(seconds=1),
                                                    NOW + timedelta(hours=2))


@settings(max_examples=60, deadline=None)
@given(locker=ids, assignment=ids, seconds=st.integers(0, 2**32 - 1))
def test_any_valid_pickup_round_trips(locker: str, assignment: str, seconds: int) -> None:
    expires = datetime.fromtimestamp(seconds, UTC)
    text = sign_pickup_token(KEY, locker_id=locker, assignment_id=assignment, expires_at=expires)
    assert set(text) <= QR_ALPHANUMERIC
    token = verifier(locker=locker).verify(text, now=datetime(1970, 1, 1, tzinfo=UTC))
    assert isinstance(token, PickupToken)
    assert (token.locker_id, token.assignment_id, token.expires_at) == (locker, assignment, expires)


@settings(max_examples=40, deadline=None)
@given(courier_id=ids, lockers=st.lists(ids, min_size=1, max_size=4))
def test_any_valid_courier_token_round_trips(courier_id: str, lockers: list[str]) -> None:
    text = sign_courier_token(KEY, courier_id=courier_id, lockers=lockers, not_before=NOW,
                              expires_at=NOW + timedelta(hours=1))
    token = verifier(locker=lockers[0]).verify(text, now=NOW)
    assert isinstance(token, CourierToken)
    assert (token.courier_id, token.lockers) == (courier_id, frozenset(lockers))


# ------------------------------------------------------------------------------ signature


def test_a_forged_signature_is_refused() -> None:
    raw = raw_of(pickup())
    assert refusal(text_of(raw[:-64] + bytes(64))) == "bad_signature"
    assert refusal(text_of(raw[:-64] + OTHER_KEY.sign(SIGNING_CONTEXT + raw[:-64]))) \
        == "bad_signature"


def test_a_token_signed_by_a_key_not_in_the_config_is_refused() -> None:
    assert refusal(pickup(key=OTHER_KEY)) == "bad_signature"
    with pytest.raises(TokenRefused, match=f"key {key_id(OTHER_KEY)}, not configured"):
        verifier().verify(pickup(key=OTHER_KEY), now=NOW)
    assert refusal(pickup(), check=TokenVerifier([], LOCKER)) == "bad_signature"


def test_keys_rotate_old_and_new_both_verify_while_configured() -> None:
    both = verifier(KEY, OTHER_KEY)
    assert both.verify(pickup(key=KEY), now=NOW)
    assert both.verify(pickup(key=OTHER_KEY), now=NOW)
    assert refusal(pickup(key=KEY), check=verifier(OTHER_KEY)) == "bad_signature"


def test_a_signature_without_the_token_context_is_refused() -> None:
    message = header() + pickup_body()
    assert refusal(text_of(message + KEY.sign(message))) == "bad_signature"


def test_tampered_fields_break_the_signature() -> None:
    text = pickup(assignment_id="p-2025-000123")
    raw = raw_of(text)
    for old, new in ((b"p-2025-000123", b"p-2025-000124"), (LOCKER.encode(), b"berlin-0043")):
        assert refusal(text_of(raw.replace(old, new)), check=verifier(locker="berlin-0043")) \
            == "bad_signature"
    later = bytearray(raw)
    later[16:20] = struct.pack(">I", struct.unpack(">I", raw[16:20])[0] + 86400)
    assert refusal(text_of(bytes(later))) == "bad_signature"
    widened = raw_of(courier()).replace(b"berlin-0043", b"berlin-0044")
    assert refusal(text_of(widened)) == "bad_signature"


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    raw = bytearray(raw_of(data.draw(st.sampled_from([PICKUP_TEXT, COURIER_TEXT]))))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    assert refusal(text_of(bytes(raw))) in {"malformed", "bad_signature"}


PICKUP_TEXT = pickup()
COURIER_TEXT = courier()


# ------------------------------------------------------------------------ time and place


def test_pickup_expiry_allows_the_clock_skew_and_no_more() -> None:
    expires = NOW + timedelta(hours=1)
    text = pickup(expires_at=expires)
    skew = timedelta(minutes=5)
    assert verifier().verify(text, now=expires + skew - timedelta(seconds=1))
    assert refusal(text, now=expires + skew) == "expired"
    assert refusal(text, now=expires + timedelta(days=400)) == "expired"
    assert refusal(text, now=expires, check=verifier(clock_skew=timedelta(0))) == "expired"


def test_courier_window_with_clock_skew() -> None:
    start, end = NOW, NOW + timedelta(hours=12)
    text = courier(not_before=start, expires_at=end)
    skew = timedelta(minutes=5)
    assert refusal(text, now=start - skew - timedelta(seconds=1)) == "not_yet_valid"
    assert verifier().verify(text, now=start - skew)
    assert verifier().verify(text, now=end + skew - timedelta(seconds=1))
    assert refusal(text, now=end + skew) == "expired"


def test_a_token_for_another_locker_is_refused() -> None:
    assert refusal(pickup(locker_id="berlin-0043")) == "wrong_locker"
    assert refusal(courier(lockers=["berlin-0043", "hamburg-7"])) == "wrong_locker"
    assert refusal(pickup(), check=verifier(locker="berlin-00420")) == "wrong_locker"


def test_a_courier_token_valid_for_too_long_is_refused() -> None:
    day = timedelta(hours=24)
    assert verifier().verify(courier(not_before=NOW, expires_at=NOW + day), now=NOW)
    too_long = courier(not_before=NOW, expires_at=NOW + day + timedelta(seconds=1))
    assert refusal(too_long) == "too_long_lived"
    assert refusal(courier(), check=verifier(max_courier_validity=timedelta(hours=8))) \
        == "too_long_lived"
    assert verifier(max_courier_validity=timedelta(days=2)).verify(too_long, now=NOW)


def test_refusals_carry_a_customer_message_and_never_the_token() -> None:
    cases = {
        "malformed": TOKEN_PREFIX + "not a token",
        "bad_signature": pickup(key=OTHER_KEY),
        "expired": pickup(expires_at=NOW - timedelta(days=1)),
        "not_yet_valid": courier(not_before=NOW + timedelta(hours=1),
                                 expires_at=NOW + timedelta(hours=2)),
        "wrong_locker": pickup(locker_id="elsewhere"),
        "too_long_lived": courier(expires_at=NOW + timedelta(days=3)),
    }
    assert set(cases) == REFUSAL_REASONS
    for reason, text in cases.items():
        with pytest.raises(TokenRefused) as caught:
            verifier().verify(text, now=NOW)
        refused = caught.value
        assert refused.reason == reason
        assert refused.message and len(refused.message) < 80 and "\n" not in refused.message
        body = text[len(TOKEN_PREFIX):]
        assert body[:12] not in str(refused) and body[:12] not in refused.message


# ------------------------------------------------------------------------------ malformed


@pytest.mark.parametrize("text", [
    "", " ", "123456", "LKT", TOKEN_PREFIX, "lkt:" + PICKUP_TEXT[4:], PICKUP_TEXT.lower(),
    PICKUP_TEXT + "=", PICKUP_TEXT + "====", PICKUP_TEXT[:-1], PICKUP_TEXT[:-8],
    PICKUP_TEXT + "A", PICKUP_TEXT + "AA", PICKUP_TEXT[:40] + " " + PICKUP_TEXT[40:],
    PICKUP_TEXT.replace("A", "1", 1), PICKUP_TEXT[:20] + "\u0410" + PICKUP_TEXT[21:],
    TOKEN_PREFIX + "A" * MAX_TOKEN_CHARS,
    TOKEN_PREFIX + "A" * 10_000_000, "\x00" * 50, "LKT:" + "A" * 128,
])
def test_malformed_texts_are_refused(text: str) -> None:
    assert refusal(text) == "malformed"


def test_scanner_line_endings_around_a_token_are_accepted() -> None:
    assert verifier().verify(f" {PICKUP_TEXT}\r\n", now=NOW)


def test_non_canonical_base32_is_refused() -> None:
    raw = raw_of(pickup(assignment_id="p-2025-0001234"))
    encoded = base64.b32encode(raw).decode().rstrip("=")
    assert len(raw) * 8 % 5, "this token's last character must carry padding bits"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    stray = alphabet[alphabet.index(encoded[-1]) ^ 1]
    assert stray != encoded[-1]
    assert base64.b32decode(encoded[:-1] + stray + "=" * (-len(encoded) % 8)) == raw
    assert refusal(TOKEN_PREFIX + encoded[:-1] + stray) == "malformed"


@pytest.mark.parametrize("message", [
    header(version=2) + pickup_body(),
    header(version=0) + pickup_body(),
    header(kind=3) + pickup_body(),
    header() + pickup_body() + b"\x00",
    header() + pickup_body()[:-1],
    header() + pickup_body(assignment=b""),
    header() + pickup_body(assignment=b"p 1"),
    header() + pickup_body(assignment=b"-p1"),
    header() + pickup_body(assignment=b"p" * 65),
    header() + pickup_body(assignment="pä".encode()),
    header() + pickup_body(locker=b"berlin-0042\n"),
    header(),
    header(COURIER) + courier_body(b"b", b"a"),
    header(COURIER) + courier_body(LOCKER.encode(), LOCKER.encode()),
    header(COURIER) + courier_body(count=0),
    header(COURIER) + courier_body(count=2),
    header(COURIER) + courier_body(*[b"l-%02d" % n for n in range(33)]),
    header(COURIER) + courier_body() + b"\x00",
    header(COURIER) + stamp(NOW) + stamp(NOW) + courier_body()[8:],
    header(COURIER) + stamp(NOW) + stamp(NOW - timedelta(1)) + courier_body()[8:],
], ids=lambda message: message.hex()[:40])
def test_genuinely_signed_but_malformed_payloads_are_refused(message: bytes) -> None:
    assert refusal(signed(message)) == "malformed"


def test_the_parser_itself_accepts_what_the_malformed_cases_vary() -> None:
    """The malformed cases above fail for the reason they vary, not for a broken helper."""
    assert verifier().verify(signed(header() + pickup_body()), now=NOW)
    assert verifier().verify(signed(header(COURIER) + courier_body(b"a", LOCKER.encode())),
                             now=NOW)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.text(max_size=300),
    st.text(max_size=300).map(lambda s: TOKEN_PREFIX + s),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=", max_size=400)
    .map(lambda s: TOKEN_PREFIX + s),
    st.binary(max_size=300).map(text_of),
    st.binary(max_size=40).map(lambda tail: text_of(raw_of(PICKUP_TEXT)[:-64] + tail)),
    st.binary(min_size=64, max_size=200).map(lambda b: text_of(header() + b)),
    st.binary(min_size=64, max_size=200).map(lambda b: text_of(header(COURIER) + b)),
))
def test_fuzzed_input_is_refused_with_a_reason_and_never_crashes(text: str) -> None:
    assert refusal(text) in REFUSAL_REASONS


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_fuzzed_payloads_under_a_genuine_signature_never_crash(body: bytes) -> None:
    """Even the key holder cannot make the parser raise anything but TokenRefused."""
    for kind in (PICKUP, COURIER, 0, 255):
        try:
            verifier().verify(signed(header(kind) + body), now=NOW)
        except TokenRefused as refused:
            assert refused.reason in REFUSAL_REASONS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.characters()), min_size=1, max_size=4))
def test_edited_tokens_never_pass(edits: list[tuple[int, str]]) -> None:
    text = PICKUP_TEXT
    for position, char in edits:
        at = position % len(text)
        text = text[:at] + char + text[at + 1:]
    if text.strip() == PICKUP_TEXT:
        return
    assert refusal(text) in {"malformed", "bad_signature"}


def test_a_non_text_input_is_refused() -> None:
    assert refusal(PICKUP_TEXT.encode()) == "malformed"  # type: ignore[arg-type]
    assert refusal(None) == "malformed"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- sizes


def test_a_typical_pickup_token_fits_a_small_qr_code() -> None:
    text = pickup(locker_id="berlin-00042", assignment_id="p-2025-00001234")
    assert (len("berlin-00042"), len("p-2025-00001234")) == (12, 15)
    assert len(text) <= TYPICAL_PICKUP_CHARS, len(text)
    assert set(text) <= QR_ALPHANUMERIC
    longest = pickup(locker_id="L" * 64, assignment_id="A" * 64)
    assert len(text) < len(longest) <= MAX_TOKEN_CHARS


def test_a_courier_token_for_a_few_lockers_stays_compact() -> None:
    text = courier(lockers=[f"berlin-{n:04d}" for n in range(40, 44)])
    assert len(text) <= 300, len(text)  # a version 11 QR code at M holds 366


def test_the_largest_token_the_signer_makes_is_accepted() -> None:
    """The verifier's size limit before decoding admits exactly what the signer may produce."""
    fixed = 16 + 8 + 65 + 1 + 64  # header, times, a 64-character courier id, count, signature
    lockers = ["A" + "L" * 63, "B" + "L" * 63]
    last = "Z" * (MAX_TOKEN_BYTES - fixed - 2 * 65 - 1)
    widest = sign_courier_token(KEY, courier_id="C" * 64, lockers=[*lockers, last],
                                not_before=NOW, expires_at=NOW + timedelta(hours=1))
    assert len(raw_of(widest)) == MAX_TOKEN_BYTES
    assert len(widest) == MAX_TOKEN_CHARS <= 500
    assert verifier(locker=last).verify(widest, now=NOW)
    with pytest.raises(ValueError, match=f"over {MAX_TOKEN_BYTES}"):
        sign_courier_token(KEY, courier_id="C" * 64, lockers=[*lockers, last + "Z"],
                           not_before=NOW, expires_at=NOW + timedelta(hours=1))


# --------------------------------------------------------------------------------- signer


@pytest.mark.parametrize("overrides", [
    {"expires_at": datetime(2030, 1, 1)},
    {"expires_at": datetime(1969, 12, 31, tzinfo=UTC)},
    {"expires_at": datetime(2107, 1, 1, tzinfo=UTC)},
    {"locker_id": ""},
    {"locker_id": "a/b"},
    {"assignment_id": "x" * 65},
    {"assignment_id": "ä"},
    {"token_id": "short"},
    {"token_id": "a" * 20},
    {"token_id": "AAAAAAAAAAAAAAAAAAAB"},  # 100 bits: the last 4 must be zero
])
def test_the_pickup_signer_refuses_what_the_verifier_would(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        pickup(**overrides)


@pytest.mark.parametrize("overrides", [
    {"lockers": []},
    {"lockers": LOCKER},
    {"lockers": [f"l-{n}" for n in range(33)]},
    {"lockers": [f"{n:02d}" + "x" * 62 for n in range(4)]},
    {"expires_at": NOW - timedelta(hours=1)},
    {"not_before": NOW, "expires_at": NOW + timedelta(microseconds=500)},
    {"courier_id": "c d"},
])
def test_the_courier_signer_refuses_what_the_verifier_would(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        courier(**overrides)


def test_the_verifier_refuses_a_bad_configuration() -> None:
    with pytest.raises(ValueError):
        TokenVerifier([KEY.public_key()], "not a locker id")
    with pytest.raises(ValueError):
        verifier(max_courier_validity=timedelta(0))
    with pytest.raises(ValueError):
        verifier(clock_skew=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        verifier().verify(PICKUP_TEXT, now=datetime(2025, 1, 1))


def test_looks_like_token_is_cheap_and_only_a_hint() -> None:
    assert looks_like_token(PICKUP_TEXT) and looks_like_token(COURIER_TEXT)
    assert looks_like_token("\r\n" + PICKUP_TEXT)
    assert not looks_like_token("123456")
    assert not looks_like_token("JJD0123456789")
    assert not looks_like_token(PICKUP_TEXT.lower())
    assert looks_like_token(TOKEN_PREFIX + "garbage")
