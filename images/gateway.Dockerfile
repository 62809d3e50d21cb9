# syntax=docker/dockerfile:1.7
# The gateway: auth, queue-aware routing over workers discovered from EndpointSlices.
#   docker build -f images/gateway.Dockerfile -t orpheus-tts-gateway .    (from the repo root)
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
RUN pip install "/src[gateway]"

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin orpheus
COPY --from=build /opt/venv /opt/venv
USER 10001
WORKDIR /home/orpheus
EXPOSE 8000
ENTRYPOINT ["orpheus-tts"]
CMD ["gateway", "--help"]
