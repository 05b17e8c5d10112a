#!/bin/sh
# System packages the test suite needs beyond Python: Chromium for the browser test
# (tests/e2e/test_ui_browser.py drives /usr/bin/chromium through Playwright; `playwright install`
# would download a browser, which needs more than the package registries). Idempotent and quiet:
# does nothing when Chromium is there. Needs root (or sudo) and apt-get (Debian/Ubuntu).
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: /usr/bin/chromium is missing and apt-get is not available;" \
         "install Chromium with your package manager (the browser test fails without it)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-system-deps: run as root to install chromium (apt-get install chromium)" >&2
        exit 0
    fi
fi
echo "install-system-deps: installing chromium (apt-get) for the browser test ..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
