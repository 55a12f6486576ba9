"""``locker-agent``: run the daemon, check a config, show the locker's state."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
from pathlib import Path

from locker_agent import __version__

# Each command's own modules (doctor, hw-test, the demo) are imported by that command: `run`
# starts faster and smaller without them (docs/benchmarks.md, issue 19).
from locker_agent.app.report import assignment_rows, compartment_rows, status_text
from locker_agent.config import AgentConfig, ConfigError, default_config_path, load_config
from locker_agent.domain.credentials import CodeHasher
from locker_agent.runtime.daemon import build_agent, run_agent
from locker_agent.runtime.errors import StartupError
from locker_agent.runtime.identity import load_identity
from locker_agent.runtime.log import configure_logging
from locker_agent.runtime.secret import SecretError
from locker_agent.runtime.state import compartments_from
from locker_agent.store import Store, StoreError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

logger = logging.getLogger("locker_agent")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_CONFIG
    handler = {
        "run": _run,
        "check-config": _check_config,
        "status": _status,
        "version": _version,
        "doctor": _doctor,
        "hw-test": _hw_test,
        "hw-monitor": _hw_monitor,
        "identity": _identity,
    }[args.command]
    code: int = handler(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locker-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the locker daemon")
    _config_option(run)
    run.add_argument(
        "--demo", action="store_true",
        help="seed demo parcels and print their pickup codes (simulated hardware only)",
    )
    run.add_argument(
        "--console", action=argparse.BooleanOptionalAction, default=None,
        help="read codes and door commands from this terminal (default: when it is a tty)",
    )
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", type=Path, help="the TOML file to check")
    status = sub.add_parser("status", help="show compartments and assignments from the database")
    _config_option(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    hw = sub.add_parser(
        "hw-test", help="open each compartment in turn and check its door sensor (installers)"
    )
    _config_option(hw)
    hw.add_argument("compartments", nargs="*", help="only these compartments (default: all)")
    hw.add_argument("--open-timeout", type=float, default=10.0, metavar="S")
    hw.add_argument("--close-timeout", type=float, default=60.0, metavar="S")
    monitor = sub.add_parser(
        "hw-monitor", help="show live door changes, keypad keys and scanned codes (installers)"
    )
    _config_option(monitor)
    monitor.add_argument("--duration", type=float, default=None, metavar="S",
                         help="stop after S seconds (default: at Ctrl-C)")
    monitor.add_argument("--show-codes", action="store_true",
                         help="print codes and keys in clear (bench only; prints a warning)")
    doctor = sub.add_parser(
        "doctor", help="check config, state, hardware, broker and TLS files; exit 1 on a failure"
    )
    _config_option(doctor)
    identity = sub.add_parser(
        "identity",
        help="print this locker's public identity key and fingerprint, for enrolment",
    )
    _config_option(identity)
    identity.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("version", help="print the version")
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None,
        help="config file (default: $LOCKER_AGENT_CONFIG or /etc/locker-agent/locker-agent.toml)",
    )


def _load(path: Path | None) -> AgentConfig | None:
    try:
        return load_config(path or default_config_path())
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config.log_level, config.log_format)
    if args.demo and config.hardware.backend != "simulated":
        print("--demo is only for the simulated locker", file=sys.stderr)
        return EXIT_CONFIG
    if args.demo and not config.operator_public_keys:
        from locker_agent.runtime.demo import with_demo_operator_key

        config = with_demo_operator_key(config)
    if _unsafe(config, args.config or default_config_path()):
        return EXIT_CONFIG
    try:
        return asyncio.run(run_agent(
            config, demo=args.demo, console=args.console,
            config_path=args.config or default_config_path(),
        ))
    except StartupError as exc:
        logger.error("cannot start: %s", exc)
        return EXIT_FAILURE


def _unsafe(config: AgentConfig, path: Path) -> bool:
    """Say why the config must not run (anyone on the broker could command it), if it must not."""
    problems = config.command_security_problems()
    if problems:
        print(str(ConfigError(path, problems)), file=sys.stderr)
    return bool(problems)


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args.path)
    if config is None:
        return EXIT_CONFIG
    for problem in config.command_security_problems():
        # valid as a file; `run` refuses it (but with --demo) and doctor fails it
        print(f"{args.path}: warning: {problem}", file=sys.stderr)
    print(
        f"{args.path}: ok — locker {config.locker_id}, {len(config.compartments)} compartments, "
        f"{config.hardware.backend} hardware, state in {config.state_dir}"
    )
    return EXIT_OK


def _no_state(config: AgentConfig, config_path: Path) -> str:
    """Why there is no database where this config points, and where it probably is."""
    where = (f"state_dir {config.state_dir} (from $LOCKER_AGENT_STATE_DIR)"
             if os.environ.get("LOCKER_AGENT_STATE_DIR")
             else f"state_dir {config.state_dir} (from {config_path}, or the default)")
    demo = Path(".state") / config.database_path.name
    if demo.is_file() and demo.resolve() != config.database_path.resolve():
        return (f"no locker database in {where}. `make run` keeps its locker's state in "
                f".state: LOCKER_AGENT_STATE_DIR=.state locker-agent status --config "
                f"{config_path}")
    return (f"no locker database in {where}: a locker that has run with this config keeps "
            "one there; set state_dir (or $LOCKER_AGENT_STATE_DIR) to where it runs")


def _status(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if not config.database_path.exists():
        print(_no_state(config, args.config or default_config_path()), file=sys.stderr)
        return EXIT_FAILURE
    store = Store(config.database_path)
    try:
        # Reports never check codes, so a throwaway key will do and the secret stays unread.
        locker = store.load(
            config.locker_id, compartments_from(config), CodeHasher(secrets.token_bytes(32)),
            sizes=config.sizes, read_only=True,
        )
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.close()
    labels = {c.id: c.label or c.id for c in config.compartments}
    if args.json:
        document = {
            "locker_id": locker.locker_id,
            "in_service": locker.in_service,
            "counts": {k.value: v for k, v in locker.counts().items()},
            "compartments": compartment_rows(locker, labels),
            "assignments": assignment_rows(locker),
        }
        print(json.dumps(document, indent=2))
    else:
        print(status_text(locker, labels))
    return EXIT_OK


def _hw_test(args: argparse.Namespace) -> int:
    from locker_agent.ops.commissioning import hw_test

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging("WARNING", config.log_format)

    async def run() -> int:
        agent = build_agent(config, cloud=False, api=False)
        await agent.start()
        try:
            results = await hw_test(
                agent, args.compartments or None, open_timeout_s=args.open_timeout,
                close_timeout_s=args.close_timeout,
            )
        finally:
            await agent.stop()
        return EXIT_OK if all(r.passed for r in results) else EXIT_FAILURE

    try:
        return asyncio.run(run())
    except StartupError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _hw_monitor(args: argparse.Namespace) -> int:
    from locker_agent.app.ports.hardware import HardwareError
    from locker_agent.ops.hw_monitor import hw_monitor

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging("WARNING", config.log_format)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        asyncio.run(hw_monitor(config, duration_s=args.duration, show_codes=args.show_codes,
                               out=out))
    except (HardwareError, StartupError) as exc:
        print(f"cannot watch the hardware: {exc} (is the locker-agent service running? "
              "stop it first)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from locker_agent.ops.doctor import run_doctor

    return run_doctor(args.config or default_config_path(), out=print)


def _version(args: argparse.Namespace) -> int:
    print(f"locker-agent {__version__}")
    return EXIT_OK




def _identity(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        identity = load_identity(config.state_dir, config.locker_id)
    except (SecretError, OSError) as exc:
        print(f"cannot read or make the identity key in {config.state_dir}: {exc}",
              file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(identity.describe(), indent=2))
    else:
        print(f"locker       {identity.locker_id}")
        print(f"public key   {identity.public_key}")
        print(f"fingerprint  {identity.fingerprint}")
        print("Enrol the public key with the cloud: it seals every code it sends this locker "
              "(locker-ctl send --locker-key).")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
