"""Every package the code and the tests import is declared, and every declared package is locked.

requirements.lock (the images, and `make`) and requirements-dev.lock (`make`: tests and tools)
are written by `make lock` from the pyproject.toml files. These checks read the files only; the
import names are mapped to distributions through what is installed in this environment.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.deploy.common import ROOT, SERVICES

LOCAL_PREFIX = "commerce-"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return normalise(match.group(0))


def project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def declared(path: Path, extra: str | None = None) -> set[str]:
    config = project(path)
    requirements = config.get("dependencies", [])
    if extra:
        requirements = config.get("optional-dependencies", {})[extra]
    return {requirement_name(r) for r in requirements}


def service_pyproject(service: str) -> Path:
    return ROOT / "services" / service / "pyproject.toml"


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith(LOCAL_PREFIX)}


RUNTIME = third_party(declared(ROOT / "pyproject.toml")) | {
    name for service in SERVICES for name in third_party(declared(service_pyproject(service)))
}
DEV = third_party(declared(ROOT / "pyproject.toml", "dev"))


@cache
def lock(name: str) -> dict[str, str]:
    """Pinned name -> version; each pin carries at least one hash (pip's --require-hashes)."""
    pins: dict[str, str] = {}
    current = None
    for line in (ROOT / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = normalise(match.group(1))
            pins[current] = match.group(2)
        elif line.strip().startswith("--hash=sha256:") and current:
            pins[current] += "#hashed"
        elif line and not line.startswith((" ", "#")):
            pytest.fail(f"{name}: not a pin: {line!r} (the local packages stay out of the lock)")
    unhashed = [pin for pin, version in pins.items() if not version.endswith("#hashed")]
    assert unhashed == [], f"{name}: pins without a hash"
    return {pin: version.split("#")[0] for pin, version in pins.items()}


def test_the_runtime_lock_pins_every_runtime_dependency() -> None:
    assert RUNTIME - set(lock("requirements.lock")) == set(), "run make lock"


def test_the_dev_lock_pins_the_dev_extra_and_the_runtime_at_the_same_versions() -> None:
    dev = lock("requirements-dev.lock")
    assert (RUNTIME | DEV) - set(dev) == set(), "run make lock"
    runtime = lock("requirements.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


@pytest.mark.parametrize("source", ["requirements.in", "requirements-dev.in"])
def test_the_lock_inputs_name_every_local_package(source: str) -> None:
    lines = [line.strip() for line in (ROOT / source).read_text().splitlines()]
    entries = {line.split("[")[0] for line in lines if line and not line.startswith(("#", "-"))}
    packages = {"."} | {f"./services/{p.parent.name}" for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert entries == packages
    assert {f"./services/{s}" for s in SERVICES} <= packages


# --- imports ---------------------------------------------------------------------------------------


def imported(paths: list[Path]) -> dict[str, str]:
    """Top-level module name -> the first file importing it (absolute imports only)."""
    found: dict[str, str] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path.relative_to(ROOT).as_posix())
    return found


def undeclared(paths: list[Path], allowed: set[str]) -> list[str]:
    distributions = packages_distributions()
    missing = []
    for module, where in sorted(imported(paths).items()):
        if module in sys.stdlib_module_names:
            continue
        names = {normalise(d) for d in distributions.get(module, [])}
        if not names or any(n.startswith(LOCAL_PREFIX) for n in names):
            continue  # the repository's own modules (a missing package fails the tests anyway)
        if not names & allowed:
            missing.append(f"{module} ({', '.join(sorted(names))}) in {where}")
    return missing


def python_files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts]


def test_the_shared_package_imports_only_what_it_declares() -> None:
    assert undeclared(python_files(ROOT / "shared"), RUNTIME & declared(ROOT / "pyproject.toml")) == []


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_imports_only_what_it_or_the_shared_package_declares(service: str) -> None:
    allowed = third_party(declared(service_pyproject(service)) | declared(ROOT / "pyproject.toml"))
    assert undeclared(python_files(ROOT / "services" / service / service), allowed) == []


def test_tests_and_the_benchmark_import_only_declared_packages() -> None:
    paths = python_files(ROOT / "tests", ROOT / "bench", ROOT / "tools")
    paths += [p for p in python_files(ROOT / "services") if "tests" in p.relative_to(ROOT / "services").parts]
    paths.append(ROOT / "conftest.py")
    assert undeclared(paths, RUNTIME | DEV) == []
