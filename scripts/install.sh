#!/usr/bin/env bash
# Install locker-agent as a systemd service on Raspberry Pi OS / Debian (run as root).
#
#   sudo scripts/install.sh [CONFIG]      CONFIG defaults to config/example-gpio.toml
#   sudo scripts/install.sh --dry-run     print what would be done
#
# Creates the locker-agent system user (groups gpio, dialout), a virtual environment in
# /opt/locker-agent, the config in /etc/locker-agent/locker-agent.toml (kept if present),
# installs systemd/locker-agent.service and enables it. The state lives in
# /var/lib/locker-agent (systemd's StateDirectory). Re-running it upgrades in place.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
dry_run=false
config="$here/config/example-gpio.toml"
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=true ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) config="$arg" ;;
    esac
done

run() {
    echo "+ $*"
    if ! $dry_run; then "$@"; fi
}

if ! $dry_run && [ "$(id -u)" -ne 0 ]; then
    echo "run as root: sudo $0 $*" >&2
    exit 1
fi
[ -f "$config" ] || { echo "no config file at $config" >&2; exit 2; }

run bash "$here/scripts/ensure-system-packages.sh" python3-venv
for group in gpio dialout; do
    getent group "$group" >/dev/null || run groupadd --system "$group"
done
if ! getent passwd locker-agent >/dev/null; then
    run useradd --system --home-dir /var/lib/locker-agent --no-create-home \
        --shell /usr/sbin/nologin --groups gpio,dialout locker-agent
fi
run install -d -m 0755 /opt/locker-agent
[ -x /opt/locker-agent/.venv/bin/python ] || run python3 -m venv /opt/locker-agent/.venv
run /opt/locker-agent/.venv/bin/python -m pip install --quiet --upgrade "$here"
run install -d -m 0750 -g locker-agent /etc/locker-agent
if [ -e /etc/locker-agent/locker-agent.toml ]; then
    echo "keeping the existing /etc/locker-agent/locker-agent.toml"
else
    run install -m 0640 -g locker-agent "$config" /etc/locker-agent/locker-agent.toml
fi
run /opt/locker-agent/.venv/bin/locker-agent check-config /etc/locker-agent/locker-agent.toml
run install -m 0644 "$here/systemd/locker-agent.service" /etc/systemd/system/locker-agent.service
run systemctl daemon-reload
run systemctl enable --now locker-agent.service
echo "installed: journalctl -u locker-agent -f to follow it; locker-agent doctor to check it"
