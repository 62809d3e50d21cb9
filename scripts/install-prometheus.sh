#!/usr/bin/env bash
# Installs Debian's prometheus package for the observability tests: `promtool check metrics`
# lints every /metrics endpoint, and the server renders the dashboard picture. Idempotent: when
# promtool is present it only checks and exits.
set -euo pipefail

have_promtool() { command -v promtool >/dev/null 2>&1 && promtool --version >/dev/null 2>&1; }

if ! have_promtool; then
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # the package's postinst would start the server where a service manager runs; we only want
  # the binaries
  $sudo_ apt-get -o DPkg::Lock::Timeout=600 update -qq
  $sudo_ apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >/dev/null
fi
have_promtool || { echo "install-prometheus: promtool did not install" >&2; exit 1; }
echo "install-prometheus: $(promtool --version 2>&1 | head -1)"
