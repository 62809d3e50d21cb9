#!/usr/bin/env bash
# Installs the Debian packages that `make images` and the real-node test cluster need: a
# daemonless image builder (buildah), a runtime (runc; crun fails on cgroup v1 hybrid hosts),
# containerd + CNI plugins for the kubelet, podman to run built images, mmdebstrap to make
# base images from the Debian mirror when no public registry can be reached.
# Idempotent: a stamp keyed by the package list skips apt once they are installed.
set -euo pipefail

PACKAGES=(buildah podman runc containerd containernetworking-plugins mmdebstrap
          iptables conntrack ethtool iproute2 socat uidmap)
STAMP_DIR="${ORPHEUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orpheus-tts}"
stamp="$STAMP_DIR/node-deps.stamp"
want="$(echo "${PACKAGES[*]}" | sha256sum | cut -c1-16)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    echo "node-deps: installing ${PACKAGES[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2
fi
mkdir -p "$STAMP_DIR"
echo "$want" > "$stamp"
