"""The public API surface, read from the OpenAPI document: every route and the service that owns it.

The services declare their operations once (`<service>/routes.py`, `shared.operations.Operation`);
`python -m gateway.openapi` writes them into `gateway/openapi.json`, each operation carrying the
gateway's facts as `x-commerce-*` keys. The gateway reads that checked-in file at start-up and never
imports a service package: its image holds only `shared` and `gateway`. A path not in the document
is a 404 at the gateway; a documented path with another method is a 405.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
OPENAPI_PATH = "/openapi.json"  # the document itself, served by the gateway under PREFIX
METHODS = ("get", "put", "post", "delete", "patch")  # the order of an OpenAPI path item


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # without PREFIX
    service: str
    admin: bool = False
    timeout: float | None = None  # seconds; the gateway's default when None
    summary: str = ""
    # A POST whose repeat has the effect of one call even without an Idempotency-Key: the gateway
    # may send it again when its connection was lost before any answer (see handlers.repeatable).
    repeatable: bool = False
    # A signed-in customer's: the customer's access token is verified and passed on as the identity;
    # "optional": a guest's too, the token verified only when one is sent (`auth.caller`).
    customer: bool | str = False


def path_order(path: str) -> tuple[tuple[bool, str], ...]:
    """A sort key that puts a literal segment before a parameter at the same place.

    Registered in this order, `/products/variants/{id}` is tried before `/products/{id}`, so that
    `variants` is never taken for a product id.
    """
    return tuple((segment.startswith("{"), segment) for segment in path.split("/"))


class DocumentError(ValueError):
    pass


def routes_from(document: Mapping[str, Any]) -> tuple[Route, ...]:
    """The routes of the document's operations, in `path_order`; the document itself is not one."""
    routes = []
    for path, item in document["paths"].items():
        if path == OPENAPI_PATH:
            continue
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            if "x-commerce-service" not in op:
                raise DocumentError(f"{method.upper()} {path} has no x-commerce-service: regenerate the document")
            routes.append(
                Route(
                    method=method.upper(),
                    path=path,
                    service=op["x-commerce-service"],
                    admin=op.get("x-commerce-admin", False),
                    customer=op.get("x-commerce-customer", False),
                    timeout=op.get("x-commerce-timeout"),
                    summary=op.get("summary", ""),
                    repeatable=op.get("x-commerce-repeatable", False),
                )
            )
    return tuple(sorted(routes, key=lambda route: path_order(route.path)))


def load_document() -> bytes:
    """The checked-in document, as served."""
    return DOCUMENT_PATH.read_bytes()


@functools.cache
def load_routes() -> tuple[Route, ...]:
    """The route table of the checked-in document, read once.

    Read on first use, never at import: `python -m gateway.openapi` imports this module to rewrite a
    document that may be stale or missing.
    """
    return routes_from(json.loads(load_document()))
