# The two commands a new user needs: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup run test test-unit test-k8s test-browser k8s-tools browser bench bench-worker \
        bench-autoscale bench-gateway bench-hedge bench-e2e bench-memory bench-textstream images clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m orpheus_tts up

# Everything CI runs: unit, engine, gateway, battery, browser and control-plane suites.
test: setup k8s-tools browser
	$(PYTEST) -q -rfE --durations=25 -p no:cacheprovider

test-unit: setup
	$(PYTEST) -q -m "not engine and not k8s and not browser"

test-k8s: setup k8s-tools
	$(PYTEST) -q tests/k8s

k8s-tools:
	@bash tests/k8s/build.sh

browser:
	@bash scripts/install-browser.sh

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

bench-textstream: setup
	$(PY) benchmarks/bench_textstream.py

images:
	docker build -f images/worker.Dockerfile -t orpheus-tts-worker .
	docker build -f images/gateway.Dockerfile -t orpheus-tts-gateway .
	docker build -f images/operator.Dockerfile -t orpheus-tts-operator .

clean:
	rm -rf $(VENV) build *.egg-info
