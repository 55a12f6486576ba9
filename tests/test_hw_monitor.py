"""`locker-agent hw-monitor`: live inputs on the simulated backend and a real pty scanner."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from locker_agent.config import load_config
from locker_agent.ops.hw_monitor import SHOW_CODES_WARNING, hw_monitor
from tests.conftest import BIN, ConfigWriter
from tests.hardware.contract import eventually
from tests.hardware.test_scanner import ScannerCable


def monitor(config: Path, stdin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "locker-agent"), "hw-monitor", "--config", str(config), "--duration", "1.5",
         *extra],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


def test_doors_and_codes_show_live_without_the_code(
    write_config: ConfigWriter, clean_env: None
) -> None:
    result = monitor(write_config(), "open A01\nclose A01\nforce A03\n482913\n")
    assert result.returncode == 0, result.stderr
    lines = [line.split("  ", 1)[1] for line in result.stdout.splitlines()]
    assert "door A02: closed" in lines  # the state found at start
    changes = lines[lines.index(next(x for x in lines if x.startswith("watching"))) + 1:]
    assert changes == ["door A01: open", "door A01: closed", "door A03: open",
                       "console: code entered (6 characters)"]
    assert "482913" not in result.stdout + result.stderr


def test_show_codes_prints_them_after_a_warning(
    write_config: ConfigWriter, clean_env: None
) -> None:
    result = monitor(write_config(), "482913\n", "--show-codes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == SHOW_CODES_WARNING
    assert "console: code entered (6 characters): 482913" in result.stdout


def test_scanned_codes_show_as_source_and_length(
    write_config: ConfigWriter, clean_env: None, tmp_path: Path
) -> None:
    cable = ScannerCable(tmp_path)
    config = write_config()
    config.write_text(config.read_text().replace(
        "[hardware.simulated]",
        f'[hardware.scanner]\nport = "{cable.path}"\nline_timeout_ms = 100\n\n[hardware.simulated]',
    ))
    lines: list[str] = []

    async def scenario() -> None:
        watching = asyncio.get_running_loop().create_task(
            hw_monitor(load_config(config), duration_s=3, out=lines.append)
        )
        await eventually(lambda: any("SerialScanner" in line for line in lines), timeout_s=3)
        await asyncio.sleep(0.2)  # the scanner's thread opens the port
        cable.send(b"LKR1.token-of-a-signed-qr\r\n")
        await eventually(lambda: any("scanner: code" in line for line in lines), timeout_s=3)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        cable.unplug()
    assert any(line.endswith("scanner: code entered (25 characters)") for line in lines)
    assert "token" not in "\n".join(lines)
