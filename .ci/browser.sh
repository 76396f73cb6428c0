#!/usr/bin/env bash
# Install Debian's Chromium (and its driver) for the browser tests in tests/browser/.
#
# Playwright drives this system Chromium (executable_path=/usr/bin/chromium): we never
# let Playwright download a browser build of its own, the machines are offline.
# Idempotent and quiet: installs only what is missing; progress goes to stderr.
set -euo pipefail

PACKAGES=(chromium chromium-driver)

say() { echo "browser.sh: $*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "must run as root to install: ${missing[*]}"
        exit 1
    fi
    say "installing ${missing[*]} from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! /usr/bin/chromium --version >/dev/null 2>&1; then
    say "/usr/bin/chromium does not run"
    exit 1
fi
