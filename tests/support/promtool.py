"""Prometheus's own linters: `promtool check metrics` on an exposition, `check rules` on PromQL.

`make test` installs promtool (scripts/install-prometheus.sh, Debian's prometheus package).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

INSTALL_HINT = "promtool is missing: run scripts/install-prometheus.sh (make test does)"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, INSTALL_HINT
    return path


def check_metrics(exposition: str | bytes) -> str:
    """promtool's complaints about a /metrics body ("" when it is clean)."""
    data = exposition.encode() if isinstance(exposition, str) else exposition
    run = subprocess.run([promtool(), "check", "metrics"], input=data, capture_output=True,
                         timeout=30)
    problems = (run.stdout + run.stderr).decode().strip()
    assert run.returncode == 0 or problems, f"promtool failed silently: {run.returncode}"
    return problems


def check_queries(exprs: dict[str, str]) -> str:
    """promtool's verdict on PromQL expressions, as recording rules ("" when all parse)."""
    rules = {"groups": [{"name": "queries", "rules": [
        {"record": name, "expr": expr} for name, expr in exprs.items()]}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        run = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=30)
    return "" if run.returncode == 0 else (run.stdout + run.stderr).strip()
