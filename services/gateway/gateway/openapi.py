"""The OpenAPI 3.1 document of the public API, generated from the services' operation tables.

Generation is a development step: `python -m gateway.openapi` imports each service's
`<service>/routes.py` (`OPERATIONS`, a list of `shared.operations.Operation`: the same handlers
and pydantic models the service registers and validates with) and writes `gateway/openapi.json`,
which is checked in. Each operation records the gateway's facts about it as `x-commerce-*` keys
(owning service, admin, customer, timeout, repeatable): the gateway builds its route table from the document
(`gateway/routes.py`) and never imports a service package at run time. A test regenerates the
document and fails on any difference, so neither the document nor the gateway can drift from the
services.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.openapi_components import (
    REF,
    SECURITY_SCHEMES,
    SHARED_SCHEMAS,
    error_response,
    response_name,
    shared_parameters,
)
from gateway.routes import DOCUMENT_PATH, METHODS, OPENAPI_PATH, DocumentError, path_order
from shared.http import BODY_METHODS, MAX_JSON_DEPTH
from shared.operations import OPTIONAL, PREFIX, Link, Operation

__all__ = ["DOCUMENT_PATH", "DocumentError", "build_document", "load_operations", "main", "render"]

SERVICES = ("basket", "orders", "shipping", "payments", "customers")

Operations = Mapping[str, Sequence[Operation]]  # service name -> its OPERATIONS

# Failures any operation can meet at the gateway, whatever the service does.
GATEWAY_ERRORS = (429, 502, 503, 504)

DESCRIPTION = """\
Headless commerce API, wire-compatible with the GetCandy 0.x storefront API.

* Resources are wrapped as `{"data": {...}}`, lists as `{"data": [...]}`; paginated lists add `meta`.
  Relations appear when asked for with `?include=a,b.c`.
* Errors are `{"error": {"http_code": 404, "message": "Resource not found"}}`; validation failures
  are a 422 with a flat map `{"field.path": ["message"]}` (a 422 for the request as a whole, such as
  an order already processed, has the error body).
* Ids are opaque lower-case strings; an unknown or malformed id in a path is a 404.
* Admin operations need `Authorization: Bearer <token>` (a JWT with the role `admin`).
* A signed-in customer's operations need `Authorization: Bearer <access token>`, the access token
  `POST /oauth/token` answers (a password grant signs in, a refresh grant renews it). Baskets and
  orders serve guests and signed-in customers alike: sent with an access token (which must then be
  valid: a 401 otherwise), they belong to the customer, and another customer's are a 404.
* Every POST accepts an `Idempotency-Key` header: a replay with the same key and body returns the
  first response; the same key with another body is a 422; a replay while the first request is
  still running is a 409.
* Requests are rate limited per client: a 429 carries `Retry-After` (seconds).
""" + (
    f"* Bodies (POST, PUT, DELETE) are JSON objects in UTF-8, nested at most {MAX_JSON_DEPTH} levels; a\n"
    "  duplicated key takes its last value. `Content-Encoding` may be `gzip` or `deflate`, any other is\n"
    "  a 415. A GET's body is ignored. A form (`application/x-www-form-urlencoded`, flat fields, the\n"
    "  last of a repeated one) is taken as the object of its fields: OAuth2 clients send their token\n"
    "  requests so.\n"
)

TAGS = {
    "basket": "Catalogue, baskets and basket lines",
    "orders": "Orders, addresses, contact, checkout",
    "shipping": "Shipping zones, methods, prices and shipments",
    "payments": "Payment providers, types and transactions",
    "customers": "Customer accounts, sign-in and address books",
    "meta": "This document",
}


# ---------------------------------------------------------------------------------------------
# Loading the services' operations


def load_operations(services: Iterable[str] = SERVICES) -> dict[str, list[Operation]]:
    """Each service's `OPERATIONS`, from `<service>/routes.py`."""
    return {service: list(importlib.import_module(f"{service}.routes").OPERATIONS) for service in services}


def check_operations(operations: Operations) -> list[str]:
    """Problems no service can see alone: an operation declared twice, a path without its slash."""
    owners: dict[tuple[str, str], str] = {}
    problems = []
    for service, ops in operations.items():
        for op in ops:
            key = (op.method, op.path)
            if op.method.lower() not in METHODS:
                problems.append(f"{service}: {op.method} {op.path}: the method is not one of {METHODS}")
            if not op.path.startswith("/") or op.path.startswith(PREFIX):
                problems.append(f"{service}: {op.method} {op.path}: a path starts with / and without {PREFIX}")
            if op.path == OPENAPI_PATH:
                problems.append(f"{service}: {op.method} {op.path} is the gateway's own")
            if key in owners:
                problems.append(f"{service}: {op.method} {op.path} is declared by {owners[key]} already")
            owners.setdefault(key, service)
    targets = {f"{op.method} {op.path}" for ops in operations.values() for op in ops}
    for service, ops in operations.items():
        for op in ops:
            problems += [
                f"{service}: {op.method} {op.path}: link {link.name} leads to {link.target}, which is not declared"
                for link in op.links
                if link.target not in targets
            ]
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
    service: str, ops: Sequence[Operation], components: dict[str, Any]
) -> dict[tuple[type[BaseModel], str], dict[str, Any]]:
    """JSON schemas of one service's models, merged into `components` (renamed on a clash)."""
    wanted: list[tuple[type[BaseModel], Any]] = []
    for op in ops:
        for model, mode in ((op.request, "validation"), (op.query, "validation"), (op.response, "serialization")):
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


def _operation_id(op: Operation) -> str:
    return _operation_id_of(op.method, op.path)


def _operation_id_of(method: str, path: str) -> str:
    words = [seg.strip("{}").replace("-", "_") for seg in path.split("/") if seg]
    return "_".join([method.lower(), *words])


def _link(link: Link) -> dict[str, Any]:
    method, _, path = link.target.partition(" ")
    doc: dict[str, Any] = {"operationId": _operation_id_of(method, path)}
    if link.parameters:
        doc["parameters"] = dict(link.parameters)
    if link.body is not None:
        doc["requestBody"] = copy.deepcopy(dict(link.body))
    if link.description:
        doc["description"] = link.description
    return doc


def _error_codes(op: Operation) -> list[int]:
    codes = set(GATEWAY_ERRORS)
    codes.update(int(c) for c in op.errors)
    if "{" in op.path:
        codes.add(404)
    if op.admin:
        codes.update((401, 403))
    if op.customer:
        codes.add(401)
    if op.method in BODY_METHODS or op.request is not None:
        # Every body is checked, even where the operation takes none (shared.http.body_middleware):
        # 400 not JSON, not UTF-8, nested too deeply or an encoding that does not decode; 408 not
        # received within the route's timeout (the gateway); 413 too large; 415 an unknown
        # Content-Encoding; 422 not an object, NUL, or invalid for the operation.
        codes.update((400, 408, 413, 415, 422))
    if op.method == "POST":
        codes.update((400, 409, 422))  # Idempotency-Key: malformed, in flight, reused with another body
    if op.query is not None:
        codes.add(422)
    return sorted(codes)


def _operation(
    service: str, op: Operation, schemas: Mapping[Any, dict[str, Any]], components: Mapping[str, Any]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": _operation_id(op), "tags": [service], "summary": op.summary}
    if op.description:
        doc["description"] = op.description
    parameters: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", op.path):
        parameters.append({"$ref": "#/components/parameters/PathId"} if name == "id" else _path_param(name))
    if op.query is not None:
        parameters.extend(_query_parameters(schemas[(op.query, "validation")], components))
    if op.method == "POST":
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if parameters:
        doc["parameters"] = parameters
    if op.request is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas[(op.request, "validation")]}},
        }
    ok: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": schemas[(op.response, "serialization")]}}
    if op.links:
        ok["links"] = {link.name: _link(link) for link in op.links}
    responses: dict[str, Any] = {str(op.status): ok}
    for code in _error_codes(op):
        responses[str(code)] = {"$ref": f"#/components/responses/{response_name(code)}"}
    doc["responses"] = responses
    # OpenAPI's alternatives: an admin's token or a customer's, or an optional customer's (`{}`: none).
    security = ([{"bearerAuth": []}] if op.admin else []) + ([{"customerAuth": []}] if op.customer else [])
    if op.customer == OPTIONAL:
        security.insert(0, {})
    if security:
        doc["security"] = security
    # What the gateway needs to route it (read back by gateway/routes.py).
    doc["x-commerce-service"] = service
    doc["x-commerce-admin"] = op.admin
    doc["x-commerce-customer"] = op.customer
    if op.timeout is not None:
        doc["x-commerce-timeout"] = op.timeout
    doc["x-commerce-repeatable"] = op.repeatable
    return doc


# A path parameter other than an id names a thing by its handle (`/payments/providers/{handle}`:
# "sandbox", "offline"), shorter than an id can be; an unknown one is a 404 all the same.
HANDLE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": HANDLE_PATTERN}}


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


def _meta_operation() -> dict[str, Any]:
    return {
        "operationId": "get_openapi",
        "tags": ["meta"],
        "summary": "This document",
        "responses": {
            "200": {
                "description": "The OpenAPI document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "429": {"$ref": f"#/components/responses/{response_name(429)}"},
        },
    }


def build_document(operations: Operations | None = None) -> dict[str, Any]:
    operations = load_operations() if operations is None else operations
    problems = check_operations(operations)
    if problems:
        raise DocumentError("\n".join(problems))
    components: dict[str, Any] = copy.deepcopy(SHARED_SCHEMAS)
    schemas: dict[Any, dict[str, Any]] = {}
    for service in sorted(operations):
        schemas.update(_service_schemas(service, operations[service], components))

    # Paths grouped by service, each service's in `path_order`, methods in the path item's order.
    ordered = [
        (service, op)
        for service, ops in operations.items()
        for op in sorted(ops, key=lambda op: (path_order(op.path), METHODS.index(op.method.lower())))
    ]
    paths: dict[str, dict[str, Any]] = {}
    used_codes = {429}
    for service, op in ordered:
        doc = _operation(service, op, schemas, components)
        used_codes.update(int(c) for c in doc["responses"] if int(c) >= 400)
        paths.setdefault(op.path, {})[op.method.lower()] = doc
    paths[OPENAPI_PATH] = {"get": _meta_operation()}

    tags = [name for name in operations if operations[name]] + ["meta"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Commerce API", "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": PREFIX}],
        "tags": [{"name": name, "description": TAGS.get(name, name)} for name in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {response_name(c): error_response(c) for c in sorted(used_codes)},
            "parameters": shared_parameters(),
            "securitySchemes": copy.deepcopy(SECURITY_SCHEMES),
        },
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in document is out of date")
    parser.add_argument("--output", type=Path, default=DOCUMENT_PATH)
    args = parser.parse_args(argv)
    operations = load_operations()
    text = render(build_document(operations))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `python -m gateway.openapi`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    count = sum(len(ops) for ops in operations.values())
    print(f"wrote {args.output} ({count} operations of {len(operations)} services)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
