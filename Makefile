# The two commands a new user needs: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup run test test-unit test-k8s test-e2e test-browser k8s-tools k8s-node browser \
        client-venvs prometheus bench bench-worker bench-autoscale bench-gateway bench-hedge \
        bench-e2e bench-memory bench-gpu bench-pools bench-textstream dashboard \
        dashboard-picture images images-gpu clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m orpheus_tts up

# Everything CI runs: unit, engine, gateway, battery, browser, control-plane and real-node
# suites (root; the node's images come from `make images`, rebuilt only when their inputs change).
# On a fresh machine the Go builds are compile-bound and the images mostly download-bound, so
# they run side by side (the shared Debian packages are installed first, once).
test: setup browser client-venvs prometheus
	@bash scripts/install-node-deps.sh
	@$(MAKE) --no-print-directory -j2 k8s-node images
	$(PYTEST) -q -rfE --durations=25 -p no:cacheprovider

test-unit: setup prometheus
	$(PYTEST) -q -m "not engine and not k8s and not node and not browser"

test-k8s: setup k8s-tools
	$(PYTEST) -q tests/k8s

k8s-tools:
	@bash tests/k8s/build.sh

# The real client packages tests/clients drives, each pinned in a venv of its own (once per
# machine, under ~/.cache/orpheus-tts/client-venvs; Canopy's client imports as orpheus_tts).
client-venvs: setup
	@$(PY) -m tests.clients.venvs >/dev/null

# The real test node: kubelet, kube-proxy, CoreDNS, pause image; containerd, runc, CNI from Debian.
# After k8s-tools: both compile the same kubernetes tree, so the node reuses its Go build cache.
k8s-node: k8s-tools
	@bash tests/k8s/node/build.sh

# Our images on a real node, installed as a user does (root; see docs/testing-k8s.md).
test-e2e: setup k8s-tools k8s-node images
	$(PYTEST) -q tests/e2e

browser:
	@bash scripts/install-browser.sh

# promtool lints every /metrics and the dashboard's PromQL in the tests
prometheus:
	@bash scripts/install-prometheus.sh

bench: bench-gateway bench-hedge bench-e2e

bench-worker: setup
	$(PY) benchmarks/bench_worker.py

bench-autoscale: setup
	$(PY) benchmarks/bench_autoscale.py

bench-gateway: setup
	$(PY) benchmarks/bench_gateway.py

bench-hedge: setup
	$(PY) benchmarks/bench_hedge.py

bench-e2e: setup
	$(PY) benchmarks/bench_e2e.py

bench-memory: setup
	$(PY) benchmarks/bench_memory.py

# The codec stage: SNAC decode per batch, eager/compile/CUDA graphs, fp32/bf16 (full on CUDA)
bench-gpu: setup
	$(PY) benchmarks/bench_gpu.py

bench-pools: setup
	$(PY) benchmarks/bench_pools.py

bench-textstream: setup
	$(PY) benchmarks/bench_textstream.py

# Regenerate the chart's Grafana dashboard from operator/orpheus_operator/dashboard.py
dashboard: setup
	$(PY) -m orpheus_operator.dashboard

# docs/img/dashboard.png: the panels' queries against a real Prometheus scraping the local stack
dashboard-picture: setup prometheus
	$(PY) benchmarks/dashboard_picture.py

# gateway, operator and the CPU worker (docker, or buildah where no engine runs); the CUDA
# worker with `make images-gpu` where its base image can be pulled.
images:
	@bash scripts/build-images.sh --export $(HOME)/.cache/orpheus-tts/images

images-gpu:
	@bash scripts/build-images.sh worker

clean:
	rm -rf $(VENV) build *.egg-info
