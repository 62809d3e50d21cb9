#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium (no browser download from anywhere
# else) driven by the Python playwright package already in .venv. Idempotent: when chromium
# and playwright are present it only checks and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"

have_chromium() { [ -x /usr/bin/chromium ] && /usr/bin/chromium --version >/dev/null 2>&1; }

if ! have_chromium; then
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
have_chromium || { echo "install-browser: chromium did not install" >&2; exit 1; }

# The driver: Python playwright, launched with executable_path=/usr/bin/chromium.
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD keeps pip's playwright from fetching its own browser build.
if ! "$PY" -c "import playwright.async_api" >/dev/null 2>&1; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PY" -m pip install -q "playwright>=1.45"
fi
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null | head -1), python playwright ready"
