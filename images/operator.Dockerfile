# syntax=docker/dockerfile:1.7
# The operator: kopf reconciling OrpheusCluster objects (and the autoscaler inside it).
#   docker build -f images/operator.Dockerfile -t orpheus-tts-operator .  (from the repo root)
# The Helm chart runs it as UID 10001 with a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Optional CA bundle for pip behind a TLS-intercepting proxy (scripts/build-images.sh mounts it).
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orpheus_tts/ orpheus_tts/
COPY worker/ worker/
COPY gateway/ gateway/
COPY operator/ operator/
RUN pip install "/src[operator]"

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin orpheus
COPY --from=build /opt/venv /opt/venv
USER 10001
WORKDIR /home/orpheus
EXPOSE 8080
ENTRYPOINT ["orpheus-tts"]
CMD ["operator"]
