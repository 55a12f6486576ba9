"""The byte protocol of Kerong KR-CU16 lock-control boards (and compatibles); no I/O here.

A frame is ``02 ADDR CMD [DATA...] 03 SUM`` where SUM is the sum of every preceding byte,
modulo 256. ADDR carries the board number (0-15) in its high nibble and the lock index (0-15)
in its low nibble. Config channels are numbered 1..16; lock index = channel - 1.

Commands used here:

* ``0x30`` status of one board (ADDR low nibble 0); the board replies
  ``02 ADDR 35 L1-8 L9-16 IR1-8 IR9-16 03 SUM`` (lock/door bits, then item-present bits;
  bit i of L1-8 is lock 1+i).
* ``0x31`` unlock one lock; the board answers with a status frame.
* ``0x37`` set the unlock (pulse) time of a board: 2 data bytes, 10 ms units, high byte first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

STX: Final = 0x02
ETX: Final = 0x03
CMD_STATUS: Final = 0x30
CMD_UNLOCK: Final = 0x31
CMD_STATUS_REPLY: Final = 0x35
CMD_SET_UNLOCK_TIME: Final = 0x37

LOCKS_PER_BOARD: Final = 16
MAX_BOARD: Final = 15
STATUS_REPLY_LEN: Final = 9
"""``02 ADDR 35 L1 L2 IR1 IR2 03 SUM``"""
MAX_UNLOCK_TIME_UNITS: Final = 0xFFFF


class ProtocolError(ValueError):
    """A frame that is not what the protocol says it must be."""


def checksum(data: bytes) -> int:
    """Sum of ``data`` modulo 256."""
    return sum(data) & 0xFF


def address(board: int, lock_index: int = 0) -> int:
    """The ADDR byte of ``board`` (0-15) and ``lock_index`` (0-15)."""
    if not 0 <= board <= MAX_BOARD:
        raise ValueError(f"board must be 0-{MAX_BOARD}, got {board}")
    if not 0 <= lock_index < LOCKS_PER_BOARD:
        raise ValueError(f"lock index must be 0-{LOCKS_PER_BOARD - 1}, got {lock_index}")
    return (board << 4) | lock_index


def channel_to_index(channel: int) -> int:
    """Config channel 1..16 to the lock index 0..15 of the protocol."""
    if not 1 <= channel <= LOCKS_PER_BOARD:
        raise ValueError(f"channel must be 1-{LOCKS_PER_BOARD}, got {channel}")
    return channel - 1


def build_frame(addr: int, cmd: int, data: bytes = b"") -> bytes:
    """``02 addr cmd data... 03 SUM``."""
    if not 0 <= addr <= 0xFF or not 0 <= cmd <= 0xFF:
        raise ValueError("address and command must be bytes")
    body = bytes([STX, addr, cmd]) + data + bytes([ETX])
    return body + bytes([checksum(body)])


def unlock_frame(board: int, lock_index: int) -> bytes:
    return build_frame(address(board, lock_index), CMD_UNLOCK)


def status_frame(board: int) -> bytes:
    return build_frame(address(board), CMD_STATUS)


def unlock_time_units(pulse_s: float) -> int:
    """``pulse_s`` in the board's 10 ms units, rounded, at least 1."""
    if not pulse_s > 0:
        raise ValueError(f"pulse must be > 0, got {pulse_s!r}")
    return max(1, min(MAX_UNLOCK_TIME_UNITS, round(pulse_s * 100)))


def set_unlock_time_frame(board: int, pulse_s: float) -> bytes:
    units = unlock_time_units(pulse_s)
    return build_frame(address(board), CMD_SET_UNLOCK_TIME, units.to_bytes(2, "big"))


def verify_frame(frame: bytes) -> None:
    """Raise ProtocolError unless ``frame`` has STX, ETX and a right checksum."""
    if len(frame) < 5:
        raise ProtocolError(f"frame too short ({len(frame)} bytes): {frame.hex(' ')}")
    if frame[0] != STX:
        raise ProtocolError(f"frame does not start with STX: {frame.hex(' ')}")
    if frame[-2] != ETX:
        raise ProtocolError(f"frame does not end with ETX: {frame.hex(' ')}")
    if checksum(frame[:-1]) != frame[-1]:
        raise ProtocolError(f"bad checksum: {frame.hex(' ')}")


@dataclass(frozen=True)
class BoardStatus:
    """A decoded status reply: raw bit fields of one board."""

    board: int
    lock_index: int
    """Low nibble of the reply's ADDR (the lock an unlock reply answers; 0 for status)."""
    lock_bits: int
    """16 bits, bit i = lock index i (L1-8 is the low byte)."""
    item_bits: int
    """16 bits, bit i = infrared item sensor of lock index i."""

    def door_open(self, lock_index: int, *, open_when_set: bool = True) -> bool:
        bit = bool(self.lock_bits >> lock_index & 1)
        return bit if open_when_set else not bit

    def item_present(self, lock_index: int) -> bool:
        return bool(self.item_bits >> lock_index & 1)


def encode_bits(flags: list[bool] | tuple[bool, ...]) -> bytes:
    """16 flags (index 0..15) as the two bytes ``1-8 9-16`` of a status reply."""
    if len(flags) != LOCKS_PER_BOARD:
        raise ValueError(f"need {LOCKS_PER_BOARD} flags, got {len(flags)}")
    value = sum(1 << i for i, flag in enumerate(flags) if flag)
    return value.to_bytes(2, "little")


def status_reply_frame(addr: int, lock_bits: bytes, item_bits: bytes) -> bytes:
    """What a board sends: ``02 addr 35 L1-8 L9-16 IR1-8 IR9-16 03 SUM``."""
    if len(lock_bits) != 2 or len(item_bits) != 2:
        raise ValueError("lock and item bits are 2 bytes each")
    return build_frame(addr, CMD_STATUS_REPLY, lock_bits + item_bits)


def parse_status_reply(frame: bytes, *, board: int | None = None) -> BoardStatus:
    """Decode a status reply; raise ProtocolError if malformed or from another board."""
    if len(frame) != STATUS_REPLY_LEN:
        raise ProtocolError(
            f"status reply must be {STATUS_REPLY_LEN} bytes, got {len(frame)}: {frame.hex(' ')}"
        )
    verify_frame(frame)
    if frame[2] != CMD_STATUS_REPLY:
        raise ProtocolError(f"unexpected command 0x{frame[2]:02x} in reply: {frame.hex(' ')}")
    reply_board = frame[1] >> 4
    if board is not None and reply_board != board:
        raise ProtocolError(f"reply from board {reply_board}, expected board {board}")
    return BoardStatus(
        board=reply_board,
        lock_index=frame[1] & 0x0F,
        lock_bits=int.from_bytes(frame[3:5], "little"),
        item_bits=int.from_bytes(frame[5:7], "little"),
    )
