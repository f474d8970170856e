"""JSON Schemas of the contract registry, the event catalogue, and the compatibility check.

`python -m shared.contracts_schema write` regenerates `shared/schemas/*.json` and `docs/events.md`
(`make contracts`); `check` exits non-zero on a breaking change to a published version or on
stale files. A breaking change is a removed or retyped field, or a new required field: it needs a
new version of the message (a new class with `version = N + 1`), never an edit of a published one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from shared.bus import Topology
from shared.contracts import EVENTS, REQUESTS, Contract

SCHEMAS = Path(__file__).parent / "schemas"
CATALOGUE = Path(__file__).resolve().parent.parent / "docs" / "events.md"
IGNORED_KEYS = {"title", "description", "default", "examples"}


def schema_name(model: type[Contract]) -> str:
    return f"{model.type}.v{model.version}"


def all_models() -> list[type[Contract]]:
    models: list[type[Contract]] = [spec.model for spec in EVENTS.values()]
    for spec in REQUESTS.values():
        models += [spec.request, spec.reply]
    return models


def generate() -> dict[str, dict[str, Any]]:
    return {schema_name(model): model.model_json_schema(mode="serialization") for model in all_models()}


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root.get("$defs", {})[node["$ref"].rsplit("/", 1)[-1]]
    return node


def breaking_changes(old: dict[str, Any], new: dict[str, Any], name: str) -> list[str]:
    """What a consumer written against `old` would trip over in `new`."""
    problems: list[str] = []

    def walk(o: dict[str, Any], n: dict[str, Any], path: str) -> None:
        o, n = _resolve(o, old), _resolve(n, new)
        if "properties" in o or "properties" in n:
            o_props, n_props = o.get("properties", {}), n.get("properties", {})
            for field, o_field in o_props.items():
                if field not in n_props:
                    problems.append(f"{path}{field}: removed")
                else:
                    walk(o_field, n_props[field], f"{path}{field}.")
            for field in sorted(set(n.get("required", [])) - set(o.get("required", []))):
                problems.append(f"{path}{field}: new required field")
            return
        for key in ("anyOf", "oneOf", "allOf"):
            if key in o or key in n:
                o_items, n_items = o.get(key, []), n.get(key, [])
                if len(o_items) != len(n_items):
                    problems.append(f"{path.rstrip('.') or '(root)'}: retyped")
                    return
                for o_item, n_item in zip(o_items, n_items, strict=True):
                    walk(o_item, n_item, path)
                return
        if "items" in o or "items" in n:
            if "items" not in o or "items" not in n:
                problems.append(f"{path.rstrip('.')}: retyped")
                return
            walk(o["items"], n["items"], f"{path}[].")
        o_sig = {k: v for k, v in o.items() if k not in IGNORED_KEYS and k != "items"}
        n_sig = {k: v for k, v in n.items() if k not in IGNORED_KEYS and k != "items"}
        if o_sig != n_sig:
            problems.append(f"{path.rstrip('.') or '(root)'}: retyped ({o_sig} -> {n_sig})")

    walk(old, new, "")
    return [
        f"{name}: {p}: a breaking change to a published version; add {name.rsplit('.v', 1)[0]}.v"
        f"{int(name.rsplit('.v', 1)[1]) + 1} instead"
        for p in problems
    ]


def load_checked_in() -> dict[str, dict[str, Any]]:
    return {p.name.removesuffix(".json"): orjson.loads(p.read_bytes()) for p in sorted(SCHEMAS.glob("*.json"))}


def check(generated: dict[str, dict[str, Any]] | None = None) -> list[str]:
    generated = generated if generated is not None else generate()
    published = load_checked_in()
    problems: list[str] = []
    for name, old in published.items():
        if name not in generated:
            problems.append(f"{name}: a published message was removed; keep it until no producer or consumer uses it")
            continue
        problems += breaking_changes(old, generated[name], name)
    return problems


def stale(generated: dict[str, dict[str, Any]] | None = None) -> list[str]:
    generated = generated if generated is not None else generate()
    published = load_checked_in()
    names = sorted(set(generated) | set(published))
    return [n for n in names if generated.get(n) != published.get(n)] + (
        ["docs/events.md"] if not CATALOGUE.exists() or CATALOGUE.read_text() != catalogue() else []
    )


def catalogue() -> str:
    lines = [
        "# Event catalogue",
        "",
        "Generated from `shared/contracts.py` by `make contracts`; do not edit by hand.",
        "Exchange `<ns>.events` (topic); routing key `<type>.v<version>`; each consumer has its quorum",
        "queue `<ns>.<service>` with retry queues and a dead-letter queue `<ns>.<service>.dlq`.",
        "",
        "## Events",
        "",
        "| routing key | producer | consumers (queue) | schema |",
        "|---|---|---|---|",
    ]
    for key, spec in sorted(EVENTS.items()):
        consumers = ", ".join(f"{c} (`{Topology('<ns>', c).queue()}`)" for c in spec.consumers)
        if spec.external:
            consumers = (consumers + ", " if consumers else "") + "published for outside subscribers"
        lines.append(f"| `{key}` | {spec.producer} | {consumers} | `shared/schemas/{key}.json` |")
    lines += [
        "",
        "## Request/reply",
        "",
        "Direct exchange `<ns>.rpc`, routing key = request type, responder queue `<ns>.<service>.rpc`,",
        "replies to the caller's exclusive reply queue by correlation id, with a deadline.",
        "",
        "| request | reply | responder | callers |",
        "|---|---|---|---|",
    ]
    for spec in sorted(REQUESTS.values(), key=lambda s: s.request.type):
        lines.append(
            f"| `{schema_name(spec.request)}` | `{schema_name(spec.reply)}` | {spec.responder} | "
            f"{', '.join(spec.callers)} |"
        )
    lines += ["", "## Payloads", ""]
    for model in all_models():
        lines.append(f"### `{schema_name(model)}`")
        lines.append("")
        doc = (model.__doc__ or "").strip()
        if doc:
            lines += [doc.splitlines()[0], ""]
        schema = model.model_json_schema(mode="serialization")
        required = set(schema.get("required", []))
        for field, prop in schema.get("properties", {}).items():
            kind = prop.get("type") or prop.get("$ref", "").rsplit("/", 1)[-1] or "any"
            if "anyOf" in prop:
                kind = " | ".join(p.get("type") or p.get("$ref", "").rsplit("/", 1)[-1] for p in prop["anyOf"])
            lines.append(f"- `{field}`: {kind}{'' if field in required else ' (optional)'}")
        lines.append("")
    return "\n".join(lines)


def write() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    generated = generate()
    for old in SCHEMAS.glob("*.json"):
        if old.name.removesuffix(".json") not in generated:
            old.unlink()
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    for name, schema in generated.items():
        (SCHEMAS / f"{name}.json").write_bytes(orjson.dumps(schema, option=options) + b"\n")
    CATALOGUE.write_text(catalogue())


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "write":
        problems = check()
        if problems and "--force" not in sys.argv:
            print("\n".join(problems), file=sys.stderr)
            sys.exit(1)
        write()
        return
    problems = check() + [f"{name}: out of date, run `make contracts`" for name in stale()]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
