"""The Kerong KR-CU16 byte protocol, without any I/O."""

from __future__ import annotations

import pytest

from locker_agent.hardware import kerong


def test_checksum_is_the_byte_sum_modulo_256() -> None:
    assert kerong.checksum(b"\x02\x00\x31\x03") == 0x36
    assert kerong.checksum(bytes([0xFF, 0xFF, 0x03])) == 0x01
    assert kerong.checksum(b"") == 0


@pytest.mark.parametrize(
    ("board", "index", "frame"),
    [
        (0, 0, "02 00 31 03 36"),
        (0, 15, "02 0f 31 03 45"),
        (1, 0, "02 10 31 03 46"),
        (9, 4, "02 94 31 03 ca"),
    ],
)
def test_unlock_frames(board: int, index: int, frame: str) -> None:
    assert kerong.unlock_frame(board, index) == bytes.fromhex(frame)


def test_status_and_unlock_time_frames() -> None:
    assert kerong.status_frame(0) == bytes.fromhex("02 00 30 03 35")
    assert kerong.status_frame(2) == bytes.fromhex("02 20 30 03 55")
    # 0.5 s = 50 units of 10 ms = 00 32
    assert kerong.set_unlock_time_frame(0, 0.5) == bytes.fromhex("02 00 37 00 32 03 6e")
    assert kerong.unlock_time_units(2.0) == 200
    assert kerong.unlock_time_units(0.001) == 1


def test_channel_and_address_ranges() -> None:
    assert kerong.channel_to_index(1) == 0
    assert kerong.channel_to_index(16) == 15
    for bad in (0, 17):
        with pytest.raises(ValueError):
            kerong.channel_to_index(bad)
    with pytest.raises(ValueError):
        kerong.address(16, 0)
    with pytest.raises(ValueError):
        kerong.address(0, 16)
    assert kerong.address(3, 5) == 0x35


def test_status_reply_decodes_lock_and_item_bits() -> None:
    # lock 1 (bit 0 of L1-8) and lock 9 (bit 0 of L9-16) set; items at locks 2 and 16.
    frame = kerong.build_frame(0x10, kerong.CMD_STATUS_REPLY, bytes([0x01, 0x01, 0x02, 0x80]))
    status = kerong.parse_status_reply(frame, board=1)
    assert status.board == 1
    assert status.lock_bits == 0x0101
    opened = [i for i in range(16) if status.door_open(i)]
    assert opened == [0, 8]
    closed_inverted = [i for i in range(16) if not status.door_open(i, open_when_set=False)]
    assert closed_inverted == [0, 8]
    assert [i for i in range(16) if status.item_present(i)] == [1, 15]


def test_encode_bits_round_trips() -> None:
    flags = [i % 3 == 0 for i in range(16)]
    frame = kerong.status_reply_frame(0x20, kerong.encode_bits(flags), kerong.encode_bits(flags))
    status = kerong.parse_status_reply(frame)
    assert [status.door_open(i) for i in range(16)] == flags
    assert [status.item_present(i) for i in range(16)] == flags


@pytest.mark.parametrize(
    "frame",
    [
        "02 00 35 00 00 00 00 03 39",  # bad checksum
        "03 00 35 00 00 00 00 03 3b",  # no STX
        "02 00 35 00 00 00 00 04 3b",  # no ETX
        "02 00 36 00 00 00 00 03 3b",  # not a status reply
        "02 00 35 00 00 00 03 3a",  # too short
        "",
    ],
)
def test_malformed_replies_are_rejected(frame: str) -> None:
    with pytest.raises(kerong.ProtocolError):
        kerong.parse_status_reply(bytes.fromhex(frame))


def test_reply_from_another_board_is_rejected() -> None:
    frame = kerong.status_reply_frame(0x10, b"\0\0", b"\0\0")
    kerong.parse_status_reply(frame, board=1)
    with pytest.raises(kerong.ProtocolError, match="board 1"):
        kerong.parse_status_reply(frame, board=0)
