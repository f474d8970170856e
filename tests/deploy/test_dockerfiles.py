"""The one Dockerfile builds any one service with the shared package only, and runs it safely.

No Docker engine here: the Dockerfile is parsed and checked (the stage BuildKit would pick for
each SERVICE build argument), the build context is computed from .dockerignore, and the image's
health check command is run against a local HTTP server.
"""

from __future__ import annotations

import http.server
import json
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.deploy.common import MIGRATING, PORTS, ROOT, SERVICES, dockerignore, env_prefix, unknown_settings

PYTHON_IMAGE = "python:3.11-slim"
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str
    stage: str

    @property
    def exec_form(self) -> list[str] | None:
        text = self.args.strip()
        if text.startswith("["):
            return json.loads(text)
        return None


def parse_dockerfile(path: Path) -> list[Instruction]:
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments (and the syntax directive) and blank lines, also inside continuations
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"

    instructions: list[Instruction] = []
    stage = ""
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
        instructions.append(Instruction(keyword, flags, rest, stage))
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)


def stage(instructions: list[Instruction], name: str) -> list[Instruction]:
    return [i for i in instructions if i.stage == name and i.keyword != "FROM"]


def parent(instructions: list[Instruction], name: str) -> str:
    return next(i.args.split()[0] for i in instructions if i.keyword == "FROM" and i.stage == name)


def image(instructions: list[Instruction], service: str) -> list[Instruction]:
    """What BuildKit builds for --build-arg SERVICE=<service>: the stages from the base image up."""
    final = [i for i in instructions if i.keyword == "FROM"][-1].args
    assert final == "${SERVICE}", "the last stage is the one named by the build argument"
    chain = [service]
    while not parent(instructions, chain[0]).startswith("${PYTHON_IMAGE}"):
        chain.insert(0, parent(instructions, chain[0]))
    return [i for name in chain for i in stage(instructions, name)]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def environment(instructions: list[Instruction], service: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                key, _, value = pair.partition("=")
                env[key] = value.replace("${SERVICE}", service)
    return env


def test_one_dockerfile_for_every_service() -> None:
    assert DOCKERFILE.is_file()
    assert sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "services").glob("*/Dockerfile")) == []


def test_builder_and_runtime_from_python_311_slim_then_a_stage_per_service(dockerfile) -> None:
    global_args = {}
    for instruction in dockerfile:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
    assert global_args == {"PYTHON_IMAGE": PYTHON_IMAGE, "SERVICE": ""}, "SERVICE has no default: name it"
    froms = [i for i in dockerfile if i.keyword == "FROM"]
    assert [f.stage for f in froms] == ["builder", "runtime", *SERVICES, ""]
    assert parent(dockerfile, "builder") == parent(dockerfile, "runtime") == "${PYTHON_IMAGE}"
    for service in SERVICES:
        assert parent(dockerfile, service) == "runtime"
        assert {i.keyword for i in stage(dockerfile, service)} <= {"ENV", "EXPOSE", "CMD"}, "no code runs there"


def test_builder_copies_only_the_lock_the_shared_package_and_the_chosen_service(dockerfile) -> None:
    copies = [i for i in dockerfile if i.keyword == "COPY"]
    sources = {src for copy in copies for src in copy.args.split()[:-1]}
    assert sources == {"requirements.lock", "pyproject.toml", "shared/", "services/${SERVICE}/"}
    assert all(copy.stage == "builder" for copy in copies), "the runtime stage copies no source"
    builder = stage(dockerfile, "builder")
    assert "SERVICE" in [i.args for i in builder if i.keyword == "ARG"]
    wheels = [shlex.split(i.args) for i in builder if i.keyword == "RUN"]
    assert wheels == [
        # The third-party packages at the lock's versions, checked against its hashes...
        ["pip", "wheel", "--wheel-dir", "/wheels", "--require-hashes", "-r", "requirements.lock"],
        # ...then the local ones, which resolve nothing more.
        ["pip", "wheel", "--wheel-dir", "/wheels", "--no-deps", ".", "./services/${SERVICE}"],
    ]
    lock_copy = next(i for i, c in enumerate(builder) if c.keyword == "COPY" and "requirements.lock" in c.args)
    lock_wheels = next(i for i, c in enumerate(builder) if c.keyword == "RUN" and "requirements.lock" in c.args)
    code_copies = [i for i, c in enumerate(builder) if c.keyword == "COPY" and "requirements.lock" not in c.args]
    assert lock_copy < lock_wheels < min(code_copies), "a code change must not rebuild the third-party wheels"


def test_runtime_installs_only_the_built_wheels_of_the_chosen_service(dockerfile) -> None:
    runtime = stage(dockerfile, "runtime")
    assert "SERVICE" in [i.args for i in runtime if i.keyword == "ARG"]
    install = next(i for i in runtime if i.keyword == "RUN" and "pip install" in i.args)
    assert install.flags["mount"] == "type=bind,from=builder,source=/wheels,target=/wheels"
    assert shlex.split(install.args) == ["pip", "install", "--no-index", "--find-links=/wheels", "commerce-${SERVICE}"]


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_a_non_root_user_with_health_check_and_sigterm(service: str, dockerfile) -> None:
    built = image(dockerfile, service)
    user = [i for i in built if i.keyword == "USER"][-1].args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so that Kubernetes runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) != 0
    after_user = built[[i.keyword for i in built].index("USER") :]
    assert not any(i.keyword == "RUN" for i in after_user), "nothing runs as root after USER"
    assert len([i for i in built if i.keyword == "USER"]) == 1

    assert only(built, "STOPSIGNAL").args == "SIGTERM"
    assert only(built, "EXPOSE").args == str(PORTS[service])
    assert only(built, "CMD").exec_form == ["python", "-m", service]

    healthcheck = only(built, "HEALTHCHECK")
    argv = json.loads(healthcheck.args.removeprefix("CMD").strip())
    assert argv[:2] == ["python", "-c"] and "/health/ready" in argv[2]


@pytest.mark.parametrize("service", SERVICES)
def test_environment_names_real_settings(service: str, dockerfile) -> None:
    prefix = env_prefix(service)
    env = environment(image(dockerfile, service), service)
    assert env["SERVICE"] == service
    assert env[f"{prefix}HOST"] == "0.0.0.0", "the settings default to loopback, unreachable from outside"
    assert env[f"{prefix}PORT"] == str(PORTS[service])
    ours = [name for name in env if name.startswith(prefix)]
    assert unknown_settings(service, ours) == []
    others = [f"{env_prefix(s)}" for s in SERVICES if s != service]
    assert not [name for name in env if name.startswith(tuple(others))], "another service's settings"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("service", SERVICES)
def test_health_check_command_passes_on_ready_and_fails_otherwise(
    service: str, dockerfile, health_server: http.server.HTTPServer
) -> None:
    healthcheck = only(image(dockerfile, service), "HEALTHCHECK")
    argv = json.loads(healthcheck.args.removeprefix("CMD").strip())
    # The image's environment, with the port overridden the way a deployment would.
    env = environment(image(dockerfile, service), service)
    env[f"{env_prefix(service)}PORT"] = str(health_server.server_address[1])

    def run() -> int:
        return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=20).returncode

    _Health.status = 200
    assert run() == 0
    _Health.status = 503
    assert run() != 0


# --- the build context ---------------------------------------------------------------------------


def test_dockerignore_keeps_junk_and_tests_out_of_the_context() -> None:
    ignore = dockerignore()
    for path in [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/support.py",
        "conftest.py",
        "services/basket/tests/test_baskets.py",
        "shared/__pycache__/db.cpython-311.pyc",
        "services/orders/orders/__pycache__/app.cpython-311.pyc",
        "services/orders/commerce_orders.egg-info/PKG-INFO",
        ".ruff_cache/0.5/cache",
        ".pytest_cache/v/cache",
        "services/payments/.pytest_cache/x",
        "bench/run.py",
        "tools/deadcode.py",
        "requirements-dev.lock",
    ]:
        assert ignore.excluded(path), path
    for path in ["requirements.lock", "pyproject.toml", "shared/db.py", "shared/migrations/0001_outbox_inbox.sql"]:
        assert not ignore.excluded(path), path


def _package_files(directory: Path) -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    )


def _package_data(pyproject: Path, package: str) -> list[str]:
    """Globs relative to the package's folder; data folders may be listed as sub-packages."""
    config = tomllib.loads(pyproject.read_text())
    globs: list[str] = []
    for key, patterns in config.get("tool", {}).get("setuptools", {}).get("package-data", {}).items():
        if key == package:
            globs += patterns
        elif key.startswith(package + "."):
            folder = key.removeprefix(package + ".").replace(".", "/")
            globs += [f"{folder}/{pattern}" for pattern in patterns]
    return globs


@pytest.mark.parametrize("service", SERVICES)
def test_the_context_holds_every_file_the_service_needs(service: str) -> None:
    ignore = dockerignore()
    package_dir = ROOT / "services" / service / service
    needed = ["requirements.lock", "pyproject.toml", f"services/{service}/pyproject.toml"]
    needed += _package_files(ROOT / "shared") + _package_files(package_dir)
    assert f"services/{service}/{service}/__main__.py" in needed
    assert [path for path in needed if ignore.excluded(path)] == []


@pytest.mark.parametrize("service", SERVICES)
def test_the_wheel_carries_the_service_data_files(service: str) -> None:
    """A non-editable install (the image) has only what package-data lists: SQL, static files."""
    package_dir = ROOT / "services" / service / service
    globs = _package_data(ROOT / "services" / service / "pyproject.toml", service)
    data = [
        Path(p).relative_to(f"services/{service}/{service}").as_posix()
        for p in _package_files(package_dir)
        if not p.endswith(".py") and not Path(p).name.startswith(".")  # .keep placeholders
    ]
    missing = [path for path in data if not any(fnmatch(path, pattern) for pattern in globs)]
    assert missing == [], f"add them to [tool.setuptools.package-data] of services/{service}/pyproject.toml"
    if service in MIGRATING:
        assert "migrations/*.sql" in globs


def test_the_shared_wheel_carries_the_platform_migrations() -> None:
    globs = _package_data(ROOT / "pyproject.toml", "shared")
    sql = [p.name for p in (ROOT / "shared" / "migrations").glob("*.sql")]
    assert sql, "shared/migrations holds the platform tables"
    assert all(any(fnmatch(f"migrations/{name}", pattern) for pattern in globs) for name in sql)
