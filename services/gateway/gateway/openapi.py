"""The OpenAPI 3.1 document of the public API, generated from the route table and the services' models.

Generation is a development step: `python -m gateway.openapi` imports each service's
`<svc>/models.py` (its `OPERATIONS` mapping, the same pydantic models the service validates
with) and writes `gateway/openapi.json`, which is checked in. The gateway serves that file and
never imports a service package at run time. A test regenerates the document and fails on any
difference, so the document cannot drift from the code.

`OPERATIONS` maps `(method, path)` (as in `gateway/routes.py`, without `/api/v1`) to
`{"request": Model | None, "response": Model | None, "status": int, "errors": [codes]}` and,
optionally, `"query": Model` (its fields become query parameters) and `"summary"`/`"description"`.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.routes import PREFIX, ROUTES, Route

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
SERVICES = ("basket", "orders", "shipping", "payments")
REF = "#/components/schemas/"
ID_PATTERN = "^[a-z0-9]{8,64}$"  # shared.http.ID_PATTERN: anything else is a 404 before any lookup
IDEMPOTENCY_KEY_PATTERN = "^[!-~]{1,255}$"  # shared.idempotency.KEY_PATTERN
OPENAPI_PATH = "/openapi.json"  # served by the gateway itself, under PREFIX

Operations = Mapping[tuple[str, str], Mapping[str, Any]]

# Failures any operation can meet at the gateway, whatever the service does.
GATEWAY_ERRORS = (429, 502, 503, 504)

DESCRIPTION = """\
Headless commerce API, wire-compatible with the GetCandy 0.x storefront API.

* Resources are wrapped as `{"data": {...}}`, lists as `{"data": [...]}`; paginated lists add `meta`.
  Relations appear when asked for with `?include=a,b.c`.
* Errors are `{"error": {"http_code": 404, "message": "Resource not found"}}`; validation failures
  are a 422 with a flat map `{"field.path": ["message"]}`.
* Ids are opaque lower-case strings; an unknown or malformed id in a path is a 404.
* Admin operations need `Authorization: Bearer <token>` (a JWT with the role `admin`).
* Every POST accepts an `Idempotency-Key` header: a replay with the same key and body returns the
  first response; the same key with another body is a 422; a replay while the first request is
  still running is a 409.
* Requests are rate limited per client: a 429 carries `Retry-After` (seconds).
"""


# ---------------------------------------------------------------------------------------------
# Shared components


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The GetCandy error body.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["http_code", "message"],
                "properties": {"http_code": {"type": "integer"}, "message": {"type": "string"}},
            }
        },
    }


# Pagination meta and links are shared too: the services define them with the same models, and
# identical definitions merge into one component (see `_service_schemas`).
SHARED_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _error_schema(),
    "ValidationErrors": {
        "type": "object",
        "description": 'A 422: dotted field paths to messages, e.g. `{"variants.0.quantity": ["..."]}`.',
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
}

_PHRASES = {
    429: "Too many requests: wait `Retry-After` seconds.",
    409: "Conflict (or the same Idempotency-Key in flight).",
}


def _response_name(code: int) -> str:
    if code == 422:
        return "ValidationFailed"
    return re.sub(r"[^A-Za-z0-9]", "", HTTPStatus(code).phrase.title())


def _error_response(code: int) -> dict[str, Any]:
    if code == 422:
        schema = {"$ref": REF + "ValidationErrors"}
        description = "Validation failed: a flat map of field paths to messages."
    else:
        schema = {"$ref": REF + "Error"}
        description = _PHRASES.get(code) or HTTPStatus(code).phrase
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if code == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before the next request.",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


# ---------------------------------------------------------------------------------------------
# Loading the services' models


def load_operations(services: Iterable[str] = SERVICES) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """Each service's OPERATIONS; a service that has not written `models.py` yet contributes none."""
    result: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for service in services:
        name = f"{service}.models"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name in (name, service):
                result[service] = {}
                continue
            raise
        result[service] = dict(getattr(module, "OPERATIONS", {}) or {})
    return result


class DocumentError(ValueError):
    pass


def check_operations(routes: Iterable[Route], operations: Mapping[str, Operations]) -> list[str]:
    """Problems between the route table and OPERATIONS: entries for routes that do not exist."""
    table = {(r.method, r.path): r.service for r in routes}
    problems = []
    for service, ops in operations.items():
        for key in ops:
            owner = table.get(key)
            if owner is None:
                problems.append(f"{service}.models OPERATIONS has {key}, which is not in gateway/routes.py")
            elif owner != service:
                problems.append(f"{service}.models OPERATIONS has {key}, which gateway/routes.py routes to {owner}")
    return problems


# ---------------------------------------------------------------------------------------------
# Building


# pydantic leaves a constraint on an optional number under its own name (`ge`), which JSON Schema
# ignores; the keyword it stands for lets clients (and schemathesis) know the bound.
_CONSTRAINTS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _walk_refs(node: Any, rename: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        numeric = node.get("type") in ("integer", "number")
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF):
                out[key] = REF + rename.get(value[len(REF) :], value[len(REF) :])
            elif numeric and key in _CONSTRAINTS and isinstance(value, int | float):
                out[_CONSTRAINTS[key]] = value
            else:
                out[key] = _walk_refs(value, rename)
        return out
    if isinstance(node, list):
        return [_walk_refs(v, rename) for v in node]
    return node


def _service_schemas(
    service: str, ops: Operations, components: dict[str, Any]
) -> dict[tuple[type[BaseModel], str], dict[str, Any]]:
    """JSON schemas of one service's models, merged into `components` (renamed on a clash)."""
    wanted: list[tuple[type[BaseModel], Any]] = []
    for spec in ops.values():
        for key, mode in (("request", "validation"), ("query", "validation"), ("response", "serialization")):
            model = spec.get(key)
            if model is not None and (model, mode) not in wanted:
                wanted.append((model, mode))
    if not wanted:
        return {}
    refs, defs = models_json_schema(wanted, ref_template=REF + "{model}")
    defs = defs.get("$defs", {})
    # Two services may both have a `Address` that differ: the later one is prefixed by its service.
    rename = {}
    for name, schema in defs.items():
        if name in components and components[name] != _walk_refs(schema, {}):
            rename[name] = service.capitalize() + name
    for name, schema in defs.items():
        components[rename.get(name, name)] = _walk_refs(schema, rename)
    return {key: _walk_refs(value, rename) for key, value in refs.items()}


def _operation_id(route: Route) -> str:
    words = [seg.strip("{}").replace("-", "_") for seg in route.path.split("/") if seg]
    return "_".join([route.method.lower(), *words])


def _error_codes(route: Route, spec: Mapping[str, Any] | None) -> list[int]:
    codes = set(GATEWAY_ERRORS)
    codes.update(int(c) for c in (spec or {}).get("errors", []))
    if "{" in route.path:
        codes.add(404)
    if route.admin:
        codes.update((401, 403))
    has_body = route.method == "POST" or bool(spec and spec.get("request") is not None)
    if has_body:
        codes.update((400, 413, 422))  # 400: a body that is not JSON; 413: too large
    if route.method == "POST":
        codes.update((400, 409, 422))  # Idempotency-Key: malformed, in flight, reused with another body
    if spec and spec.get("query") is not None:
        codes.add(422)
    return sorted(codes)


def _operation(
    route: Route,
    spec: Mapping[str, Any] | None,
    schemas: Mapping[Any, dict[str, Any]],
    components: Mapping[str, Any],
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "tags": [route.service],
        "summary": (spec or {}).get("summary") or route.summary,
    }
    description = (spec or {}).get("description")
    if spec is None:
        op["x-commerce-pending"] = True
        description = "The owning service has not published the models of this operation yet."
    if description:
        op["description"] = description
    parameters: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", route.path):
        parameters.append({"$ref": "#/components/parameters/PathId"} if name == "id" else _path_param(name))
    query = (spec or {}).get("query")
    if query is not None:
        parameters.extend(_query_parameters(schemas[(query, "validation")], components))
    if route.method == "POST":
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if parameters:
        op["parameters"] = parameters
    request = (spec or {}).get("request")
    if request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas[(request, "validation")]}},
        }
    responses: dict[str, Any] = {}
    if spec is None:
        responses["default"] = {"description": "Not documented yet."}
    else:
        status = int(spec.get("status", 200))
        response = spec.get("response")
        ok: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if response is not None:
            ok["content"] = {"application/json": {"schema": schemas[(response, "serialization")]}}
        responses[str(status)] = ok
    for code in _error_codes(route, spec):
        responses[str(code)] = {"$ref": f"#/components/responses/{_response_name(code)}"}
    op["responses"] = responses
    if route.admin:
        op["security"] = [{"bearerAuth": []}]
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": ID_PATTERN}}


def _query_parameters(ref: dict[str, Any], components: Mapping[str, Any]) -> list[dict[str, Any]]:
    schema = components[ref["$ref"][len(REF) :]]
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop.pop("description")
        params.append(param)
    return params


def build_document(
    operations: Mapping[str, Operations] | None = None, routes: Iterable[Route] = ROUTES
) -> dict[str, Any]:
    routes = tuple(routes)
    operations = load_operations() if operations is None else operations
    problems = check_operations(routes, operations)
    if problems:
        raise DocumentError("\n".join(problems))
    components: dict[str, Any] = copy.deepcopy(SHARED_SCHEMAS)
    schemas: dict[Any, dict[str, Any]] = {}
    for service in sorted(operations):
        schemas.update(_service_schemas(service, operations[service], components))

    paths: dict[str, dict[str, Any]] = {}
    used_codes: set[int] = set()
    for route in routes:
        spec = operations.get(route.service, {}).get((route.method, route.path))
        op = _operation(route, spec, schemas, components)
        used_codes.update(int(c) for c in op["responses"] if c.isdigit() and int(c) >= 400)
        paths.setdefault(route.path, {})[route.method.lower()] = op
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "get_openapi",
            "tags": ["meta"],
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **{str(c): {"$ref": f"#/components/responses/{_response_name(c)}"} for c in (429,)},
            },
        }
    }
    used_codes.add(429)

    return {
        "openapi": "3.1.0",
        "info": {"title": "Commerce API", "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": PREFIX}],
        "tags": [
            {"name": "basket", "description": "Catalogue, baskets and basket lines"},
            {"name": "orders", "description": "Orders, addresses, contact, checkout"},
            {"name": "shipping", "description": "Shipping zones, methods, prices and shipments"},
            {"name": "payments", "description": "Payment providers, types and transactions"},
            {"name": "meta", "description": "This document"},
        ],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {_response_name(c): _error_response(c) for c in sorted(used_codes)},
            "parameters": {
                "PathId": {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "An opaque id; an unknown or malformed id is a 404.",
                    "schema": {"type": "string", "pattern": ID_PATTERN},
                },
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": (
                        "A unique key (a random UUID) per logical operation: a retry with the same key and body "
                        "returns the first response instead of acting twice. Kept at least 24 hours."
                    ),
                    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                },
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An HS256 JWT with `roles` holding `admin` (`python -m gateway token`).",
                }
            },
        },
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_document() -> bytes:
    """The checked-in document, as served."""
    return DOCUMENT_PATH.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in document is out of date")
    parser.add_argument("--output", type=Path, default=DOCUMENT_PATH)
    args = parser.parse_args(argv)
    operations = load_operations()
    text = render(build_document(operations))
    pending = [f"{r.method} {r.path}" for r in ROUTES if (r.method, r.path) not in operations.get(r.service, {})]
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `python -m gateway.openapi`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(ROUTES) - len(pending)}/{len(ROUTES)} operations with models)")
    for item in pending:
        print(f"  pending (no models yet): {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
