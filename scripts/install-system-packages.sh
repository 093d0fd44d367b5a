#!/usr/bin/env bash
# Installs the named Debian packages that are missing; does nothing when all are present.
#
#     scripts/install-system-packages.sh chromium [more packages...]
#
# apt-get update runs only when something has to be installed. Needs root or sudo. On a system
# without apt-get it only says what is missing.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 PACKAGE..." >&2
    exit 2
fi

package_present() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' ||
        command -v "$1" >/dev/null 2>&1
}

missing=()
for package in "$@"; do
    package_present "$package" || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "==> system packages present: $*"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "==> warning: missing system packages: ${missing[*]}" >&2
    echo "    This script installs with apt-get only; install them with your package manager." >&2
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "==> error: installing ${missing[*]} needs root, and sudo is not available" >&2
        exit 1
    fi
    sudo=(sudo)
fi

apt_get() {
    # Wait for another apt run to release its lock instead of failing at once.
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 -q "$@"
}

echo "==> installing system packages: ${missing[*]}"
apt_get update -qq
apt_get install -y --no-install-recommends "${missing[@]}" >/dev/null
echo "==> installed: ${missing[*]}"
