"""A service's public operations, declared once.

Each service lists its operations in `<service>/routes.py` (`OPERATIONS`). From that one table:

- the service registers its aiohttp routes (`routes(OPERATIONS)`);
- `python -m gateway.openapi` writes the OpenAPI document (request, query and response models,
  the 4xx answers, and the gateway's own facts about each operation as `x-commerce-*` keys);
- the gateway builds its route table from that document: which service owns a path, whether it
  needs an admin token or a customer's, its timeout, whether a lost POST may be sent again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

PREFIX = "/api/v1"
# `Operation.customer` of a guest operation that also knows a signed-in customer.
OPTIONAL = "optional"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, eq=False)
class Link:
    """An OpenAPI link: what a success of one operation lets a client do next, with which values
    (runtime expressions such as `$response.body#/data/id`). A client can follow them from a
    basket to an order to its payment; so does the stateful schemathesis run, which is how it
    reaches the core of the service rather than stopping at unknown ids."""

    name: str
    target: str  # "METHOD /path" of the operation it leads to, as declared
    parameters: Mapping[str, str] = field(default_factory=dict)  # "path.id": "$response.body#/data/id"
    body: Mapping[str, Any] | None = None  # merged into the target's request body
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # as the public API shows it, without PREFIX: "/orders/{id}"
    handler: Handler
    summary: str
    admin: bool = False  # the gateway asks for an admin token; the service checks the identity too
    # A signed-in customer's: the gateway asks for the customer's access token and passes the
    # customer on as the identity; the service checks it too. `OPTIONAL`: a guest's operation that
    # also serves a signed-in customer: without a token the caller is a guest, with one the token
    # must be valid (an expired one is a 401, never a guest) and the customer is passed on. With
    # `admin=True` too: an admin's token or a customer's, each passed on as its identity.
    customer: bool | Literal["optional"] = False
    request: type[BaseModel] | None = None  # the JSON body
    query: type[BaseModel] | None = None  # its fields are the query parameters
    response: type[BaseModel] | None = None  # the body of a success
    status: int = 200  # of a success
    errors: tuple[int, ...] = ()  # the 4xx this operation gives (the gateway's own are added)
    description: str = ""
    timeout: float | None = None  # seconds at the gateway; its default when None
    # A POST whose repeat has the effect of one call even without an Idempotency-Key: the gateway
    # may send it again when its connection was lost before any answer.
    repeatable: bool = False
    links: tuple[Link, ...] = ()  # from its success, in the OpenAPI document


def routes(operations: Iterable[Operation]) -> list[web.RouteDef]:
    return [web.route(op.method, PREFIX + op.path, op.handler) for op in operations]
