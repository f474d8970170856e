"""What the deployment tests share: the services, their settings, the shutdown budget."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from opentelemetry import environment_variables as otel_api_variables
from opentelemetry.sdk import environment_variables as otel_sdk_variables

from shared import bus, outbox
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
SERVICES = ("gateway", "basket", "orders", "shipping", "payments", "customers")
MIGRATING = tuple(s for s in SERVICES if s != "gateway")
PORTS = {"gateway": 8000, "basket": 8001, "orders": 8002, "shipping": 8003, "payments": 8004, "customers": 8005}
# A Deployment's grace period and compose's stop_grace_period must leave this much on top of
# the computed drain, for the event loop to close the pool and exit.
SHUTDOWN_MARGIN = 5


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"{service}.settings")
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, ServiceSettings) and value is not ServiceSettings
    ]
    assert len(found) == 1, f"{service}.settings defines {found}"
    return found[0]


def env_prefix(service: str) -> str:
    return settings_class(service).model_config["env_prefix"]


def unknown_settings(service: str, names: list[str]) -> list[str]:
    """Environment variable names that no field of the service's settings reads (typos)."""
    cls = settings_class(service)
    prefix = env_prefix(service)
    # A field with an alias is read from that plain name (COMMERCE_ENV, IDENTITY_SIGNING_KEY).
    fields = {
        field.validation_alias.upper() if isinstance(field.validation_alias, str) else f"{prefix}{name}".upper()
        for name, field in cls.model_fields.items()
    }
    return sorted(name for name in names if name.upper() not in fields and not _opentelemetry_variable(name))


# OpenTelemetry's standard variables configure tracing (shared/tracing.py): read by its SDK and
# instrumentations, not by the settings. Known by name, so that a misspelt one is still caught.
_OTEL_VARIABLES = {
    value
    for module in (otel_api_variables, otel_sdk_variables)
    for name, value in vars(module).items()
    if name.startswith("OTEL_") and isinstance(value, str)
}
_OTEL_EXCLUDED_URLS = re.compile(r"OTEL_PYTHON_(\w+_)?EXCLUDED_URLS")


def _opentelemetry_variable(name: str) -> bool:
    return name in _OTEL_VARIABLES or bool(_OTEL_EXCLUDED_URLS.fullmatch(name))


def _literal_timeouts(function) -> float:
    """The sum of the `timeout=<number>` literals in a function: its worst-case wait."""
    source = inspect.getsource(function)
    values = [float(v) for v in re.findall(r"timeout=(\d+(?:\.\d+)?)", source)]
    assert values, f"{function.__qualname__} has no literal timeout: update the shutdown budget in tests/deploy"
    return sum(values)


def drain_after_http(service: str) -> float:
    """Worst-case seconds the cleanup steps after the HTTP drain take (consumers, then the relay)."""
    if service == "gateway":
        return 0.0
    # EventConsumer.stop and RpcServer.stop drain through _Consumption.stop.
    return _literal_timeouts(bus._Consumption.stop) + _literal_timeouts(outbox.Relay.stop)


# --- .dockerignore (Docker's rules: Go filepath.Match per path segment, `**` any depth, a match
# on a directory excludes everything below it, `!` re-includes) ---------------------------------


def _segment_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = pattern.strip("/").split("/")
    regex = ""
    for index, part in enumerate(parts):
        if part == "**":
            regex += "(?:[^/]+/)*" if index < len(parts) - 1 else ".*"
        else:
            regex += _segment_regex(part) + ("/" if index < len(parts) - 1 else "")
    return re.compile(regex)


class DockerIgnore:
    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            self.rules.append((negate, _pattern_regex(line.lstrip("!").strip())))

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context root, `/`-separated) stays out of the context."""
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not negate
        return result


def dockerignore() -> DockerIgnore:
    return DockerIgnore((ROOT / ".dockerignore").read_text())


def longest_request(service: str) -> float:
    """How long an in-flight request may legitimately take: the HTTP drain must wait that long."""
    settings = settings_class(service)()
    if service == "gateway":
        from gateway.routes import load_routes

        return max(route.timeout or settings.default_timeout for route in load_routes())
    # A handler that waits for an outcome does so up to a `*_deadline` setting (orders' checkout).
    deadlines = [getattr(settings, name) for name in type(settings).model_fields if name.endswith("deadline")]
    return max(deadlines, default=0.0)
