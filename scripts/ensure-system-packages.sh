#!/usr/bin/env bash
# Install the Debian packages named on the command line if they are missing.
# Runs apt-get directly as root, through sudo otherwise; says what to run if neither works.
set -euo pipefail

missing=()
for package in "$@"; do
    case "$package" in
        python3-venv)
            # venv works when ensurepip does (pyenv and python.org builds have it built in)
            python3 -c 'import ensurepip, venv' 2>/dev/null && continue ;;
        *)
            dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" && continue ;;
    esac
    missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
