"""The serial code scanner over a real pseudo-terminal, written to as a scanner would."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pty
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from locker_agent.app.ports.hardware import CodeEntry
from locker_agent.hardware.scanner import LineAssembler, SerialScanner
from tests.hardware.contract import eventually, run

SIGNED_TOKEN = "LKR1." + "A" * 200 + "." + "s1g-_" * 9  # ~250 ASCII characters


class ScannerCable:
    """A pty whose slave side the scanner opens through a symlink, like /dev/serial/by-id/.

    ``unplug()`` closes the pty (reads fail, the device node goes away); ``plug()`` makes a
    new one behind the same path.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "usb-scanner"
        self._master = self._slave = -1
        self.plug()

    def plug(self) -> None:
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.symlink_to(os.ttyname(self._slave))

    def unplug(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    def send(self, data: bytes) -> None:
        os.write(self._master, data)


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[ScannerCable]:
    cable = ScannerCable(tmp_path)
    try:
        yield cable
    finally:
        cable.unplug()


class Received:
    def __init__(self) -> None:
        self.entries: list[CodeEntry] = []

    async def __call__(self, entry: CodeEntry) -> None:
        self.entries.append(entry)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.entries]


def scanner_on(cable: ScannerCable, **options: float) -> SerialScanner:
    return SerialScanner(str(cable.path), reconnect_s=0.05, **options)  # type: ignore[arg-type]


async def connected(scanner: SerialScanner) -> None:
    await eventually(lambda: scanner.connected, timeout_s=3, what="scanner port open")


def test_codes_end_at_cr_lf_or_crlf_and_come_from_the_scanner(cable: ScannerCable) -> None:
    async def scenario() -> None:
        received = Received()
        scanner = scanner_on(cable)
        await scanner.start(received)
        try:
            await connected(scanner)
            cable.send(b"482913\r111222\n333444\r\n" + SIGNED_TOKEN.encode() + b"\r\n")
            await eventually(lambda: len(received.entries) == 4, timeout_s=3, what="4 codes")
            assert received.texts == ["482913", "111222", "333444", SIGNED_TOKEN]
            assert {e.source for e in received.entries} == {"scanner"}
        finally:
            await scanner.stop()

    run(scenario())


def test_a_code_split_across_writes_is_one_code(cable: ScannerCable) -> None:
    async def scenario() -> None:
        received = Received()
        scanner = scanner_on(cable)
        await scanner.start(received)
        try:
            await connected(scanner)
            for part in (b"48", b"29", b"13\r", b"\n"):
                cable.send(part)
                await asyncio.sleep(0.02)
            await eventually(lambda: received.texts == ["482913"], timeout_s=3, what="code")
        finally:
            await scanner.stop()

    run(scenario())


def test_bad_lines_are_dropped_without_logging_them(
    cable: ScannerCable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        received = Received()
        scanner = scanner_on(cable, max_length=32)
        await scanner.start(received)
        try:
            await connected(scanner)
            cable.send(b"123\x00456\r\n")  # a NUL in the middle
            cable.send(b"\x1b[31m777888\r\n")  # an escape sequence
            cable.send(b"9" * 40 + b"\r\n")  # too long
            cable.send("55é66\r\n".encode())  # not ASCII
            cable.send(b"246810\r\n")  # and the scanner still works
            await eventually(lambda: received.texts == ["246810"], timeout_s=3, what="code")
            await asyncio.sleep(0.1)
            assert received.texts == ["246810"]
        finally:
            await scanner.stop()

    run(scenario())
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 4
    assert any("non-printable" in m for m in rejected)
    assert any("longer than 32" in m for m in rejected)
    text = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    for secret in ("123", "456", "777888", "9999", "55", "246810"):
        assert secret not in text


def test_a_partial_line_times_out(cable: ScannerCable, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    async def scenario() -> None:
        received = Received()
        scanner = scanner_on(cable, line_timeout_s=0.15)
        await scanner.start(received)
        try:
            await connected(scanner)
            cable.send(b"13579")  # the scan was cut off: no terminator
            await asyncio.sleep(0.4)
            cable.send(b"2468\r\n")  # must not be glued to the stale half
            await eventually(lambda: received.texts == ["2468"], timeout_s=3, what="code")
        finally:
            await scanner.stop()

    run(scenario())
    assert any("timed out" in r.getMessage() for r in caplog.records)


def test_an_unplugged_scanner_is_reported_and_reconnected(
    cable: ScannerCable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        received = Received()
        scanner = scanner_on(cable)
        await scanner.start(received)
        try:
            await connected(scanner)
            cable.send(b"111\r")
            await eventually(lambda: received.texts == ["111"], timeout_s=3, what="first code")
            cable.unplug()
            await eventually(lambda: not scanner.connected, timeout_s=3, what="port gone")
            assert scanner.started  # reported, not crashed
            await asyncio.sleep(0.2)  # several reconnect attempts while it is away
            cable.plug()
            await connected(scanner)
            cable.send(b"222\r")
            await eventually(lambda: received.texts == ["111", "222"], timeout_s=3,
                             what="code after replug")
        finally:
            await scanner.stop()

    run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("went away" in m for m in messages)
    # the outage is reported once, not once per reconnect attempt
    assert sum("unavailable" in m for m in messages) <= 1


def test_a_missing_port_at_start_does_not_stop_the_locker(tmp_path: Path) -> None:
    async def scenario() -> None:
        scanner = SerialScanner(str(tmp_path / "no-such-port"), reconnect_s=0.05)
        await scanner.start(Received())
        try:
            await asyncio.sleep(0.15)
            assert scanner.started and not scanner.connected and not scanner.healthy()
        finally:
            await scanner.stop()
        assert not scanner.started

    run(scenario())


def test_a_failing_submission_does_not_stop_the_scanner(cable: ScannerCable) -> None:
    async def scenario() -> None:
        seen: list[str] = []

        async def flaky(entry: CodeEntry) -> None:
            seen.append(entry.text)
            if len(seen) == 1:
                raise RuntimeError("database busy")

        scanner = scanner_on(cable)
        await scanner.start(flaky)
        try:
            await connected(scanner)
            cable.send(b"111\r\n222\r\n")
            await eventually(lambda: seen == ["111", "222"], timeout_s=3, what="both codes")
        finally:
            await scanner.stop()

    run(scenario())


def test_line_assembler_rules_without_a_port() -> None:
    rejected: list[tuple[str, int]] = []
    lines = LineAssembler(max_length=5, line_timeout_s=1.0,
                          rejected=lambda reason, n: rejected.append((reason, n)))
    assert lines.feed(b"\r\n\r\n", 0.0) == []  # blank lines are nothing
    assert lines.feed(b"12345\r", 0.0) == ["12345"]  # exactly the limit is fine
    assert lines.feed(b"123456\r", 0.0) == []
    assert lines.feed(b"12\x7f3\n", 0.0) == []  # DEL is not printable
    assert lines.feed(b"12", 0.0) == []
    assert lines.feed(b"3\r", 0.9) == ["123"]  # the gap was under the timeout
    assert lines.feed(b"45", 1.0) == []
    assert lines.feed(b"6\r", 2.5) == ["6"]  # "45" timed out first
    assert [r for r, _ in rejected] == [
        "longer than 5 characters", "non-printable input", "no line end; timed out"
    ]
    assert [n for _, n in rejected] == [6, 4, 2]
    with pytest.raises(ValueError):
        LineAssembler(max_length=0)
    with pytest.raises(ValueError):
        LineAssembler(line_timeout_s=0)
