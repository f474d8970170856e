"""The parts of the OpenAPI document every operation shares: the GetCandy error body and its
responses, the path id and Idempotency-Key parameters, the admin and customer security schemes."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from shared.http import ID_PATTERN
from shared.idempotency import KEY_PATTERN

REF = "#/components/schemas/"


def error_schema() -> dict[str, Any]:
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
# identical definitions merge into one component (see `openapi._service_schemas`).
SHARED_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": error_schema(),
    "ValidationErrors": {
        "type": "object",
        "description": 'A 422: dotted field paths to messages, e.g. `{"variants.0.quantity": ["..."]}`.',
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
}

_PHRASES = {
    429: "Too many requests: wait `Retry-After` seconds.",
    409: "Conflict (or the same Idempotency-Key in flight).",
    415: "Unsupported Content-Encoding: `Accept-Encoding` lists the ones accepted.",
}


def response_name(code: int) -> str:
    if code == 422:
        return "ValidationFailed"
    return re.sub(r"[^A-Za-z0-9]", "", HTTPStatus(code).phrase.title())


def error_response(code: int) -> dict[str, Any]:
    if code == 422:
        # Both shapes, as upstream: the flat map for fields, the error body for a rule the request
        # as a whole breaks ("This order has already been processed"; the stateful run meets it).
        schema = {"anyOf": [{"$ref": REF + "ValidationErrors"}, {"$ref": REF + "Error"}]}
        description = (
            "Validation failed: a flat map of field paths to messages, or the error body when the "
            "request as a whole breaks a rule."
        )
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


def shared_parameters() -> dict[str, Any]:
    return {
        "PathId": {
            "name": "id",
            "in": "path",
            "required": True,
            "description": "An opaque id; an unknown or malformed id is a 404.",
            "schema": {"type": "string", "pattern": ID_PATTERN.pattern},
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": (
                "A unique key (a random UUID) per logical operation: a retry with the same key and body "
                "returns the first response instead of acting twice. Kept at least 24 hours."
            ),
            "schema": {"type": "string", "pattern": KEY_PATTERN.pattern},
        },
    }


SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An HS256 JWT with `roles` holding `admin` (`python -m gateway token`).",
    },
    "customerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A signed-in customer's access token, as `POST /oauth/token` answers it.",
    },
}
