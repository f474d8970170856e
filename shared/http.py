"""HTTP edge helpers: GetCandy error bodies, JSON in and out, request ids, health routes."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError

from shared.errors import UNAVAILABLE
from shared.identity import (
    CUSTOMER_ROLE,
    IDENTITY_HEADER,
    SIGNATURE_HEADER,
    SIGNING_KEY,
    IdentityError,
    verify_identity,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
REQUEST_ID = web.RequestKey("request_id", str)


def request_id(request: web.Request) -> str | None:
    """The request's id (from `X-Request-Id` or generated): the correlation id of what it causes."""
    return request.get(REQUEST_ID)


DEFAULT_MESSAGES = {
    400: "Wrong arguments",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Resource not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable entity",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_id() -> str:
    """An opaque public id: 120 random bits as 24 lower-case base32 characters, never a sequence."""
    return base64.b32encode(secrets.token_bytes(15)).decode().lower()


ID_PATTERN = re.compile(r"^[a-z0-9]{8,64}$")


def is_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def model_response(body: BaseModel, status: int = 200) -> web.Response:
    """A success serialised through its operation's response model (the one the OpenAPI document
    shows): fields by their wire names, and only those set, so a relation not included is absent."""
    return json_response(body.model_dump(by_alias=True, exclude_unset=True), status=status)


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    return {"error": {"http_code": status, "message": message or DEFAULT_MESSAGES.get(status, "Error")}}


def error_response(status: int, message: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error_body(status, message), status=status, headers=headers)


class ApiError(Exception):
    """An error with the GetCandy body `{"error": {"http_code", "message"}}`."""

    def __init__(self, status: int, message: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message or DEFAULT_MESSAGES.get(status, "Error"))
        self.status = status
        self.message = message or DEFAULT_MESSAGES.get(status, "Error")
        self.headers = headers


class NotFound(ApiError):
    def __init__(self, message: str | None = None):
        super().__init__(404, message)


class ValidationFailed(Exception):
    """A 422 with the flat map `{"field.path": ["message", ...]}`."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def one(cls, field: str, message: str) -> ValidationFailed:
        return cls({field: [message]})


def validation_map(exc: ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        errors.setdefault(path, []).append(message)
    return errors


# Bodies are small documents: 64 levels is far more than any operation takes, and a bound that
# keeps every later step (the NUL check, validation, orjson's encoder with its 255-level limit,
# jsonb) away from its own recursion limits.
MAX_JSON_DEPTH = 64
TOO_DEEP_MESSAGE = f"The request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)"
NUL_MESSAGE = "Text must not contain NUL characters"


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, checked before anything else sees it: a 400 when it is not JSON, not
    UTF-8 or deeper than `MAX_JSON_DEPTH`, a 422 when it holds NUL. An empty body is `{}`.

    Duplicate keys: the last one wins (orjson's rule, and what most JSON parsers do); RFC 8259 leaves
    it open, and refusing them would need a second parser for no gain.
    """
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses invalid UTF-8 and lone surrogates, numbers that overflow a double (1e400)
        # and nesting past 1024 levels: all of them are the client's mistake.
        if "UTF-8" in str(exc):
            raise ApiError(400, "The request body is not valid UTF-8") from exc
        raise ApiError(400, "The request body is not valid JSON") from exc
    path = _nul_path(data, MAX_JSON_DEPTH)
    if path is not None:
        raise ValidationFailed.one(path or "body", NUL_MESSAGE)
    return data


# OAuth2 clients send their token requests as a form (RFC 6749 4.3.2): a form body is taken as the
# object of its fields, and then meets the same checks and models as a JSON body.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 100


def parse_form(raw: bytes) -> dict[str, str]:
    """A URL-encoded form body as an object of strings: a 400 when it is not UTF-8 (as sent or
    percent-decoded) or has more than `MAX_FORM_FIELDS` fields, a 422 when it holds NUL. A repeated
    field takes its last value, as a duplicated JSON key does."""
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "The request body is not valid UTF-8") from exc
    except ValueError as exc:
        raise ApiError(400, f"A form body has at most {MAX_FORM_FIELDS} fields") from exc
    data = dict(pairs)
    refuse_nul(data)
    return data


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse and validate a request body; bad input is a 4xx and never reaches the core."""
    # Parsed and checked already by body_middleware (every service has it), else here.
    data = request[JSON_BODY] if JSON_BODY in request else parse_json(await request.read())
    if not isinstance(data, dict):
        raise ValidationFailed.one("body", "The request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(validation_map(exc)) from exc


def _children(value: dict | list, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path, key, item) of each member of a container; the key is "" for a list."""
    if isinstance(value, dict):
        for key, item in value.items():
            key = str(key)
            yield (f"{path}.{key}" if path else key), key, item
    else:
        for index, item in enumerate(value):
            yield (f"{path}.{index}" if path else str(index)), "", item


def _nul_path(value: Any, max_depth: int | None = None) -> str | None:
    """The path of the first text (value or key) holding NUL, depth first; "" for the value itself.

    Iterative, with a stack of iterators: no input can exhaust Python's recursion limit, however
    deep (orjson parses up to 1024 levels). Past `max_depth` levels, a 400.
    """
    if isinstance(value, str):
        return "" if "\x00" in value else None
    if not isinstance(value, dict | list):
        return None
    stack = [_children(value, "")]
    while stack:
        for path, key, item in stack[-1]:
            if "\x00" in key or (isinstance(item, str) and "\x00" in item):
                return path
            if isinstance(item, dict | list):
                if max_depth is not None and len(stack) >= max_depth:
                    raise ApiError(400, TOO_DEEP_MESSAGE)
                stack.append(_children(item, path))
                break  # descend; this level's iterator resumes when the child is done
        else:
            stack.pop()
    return None


def refuse_nul(data: Any) -> None:
    """Postgres text and jsonb cannot hold NUL: bad input, refused at the edge, never a 500 later."""
    path = _nul_path(data)
    if path is not None:
        raise ValidationFailed.one(path or "body", NUL_MESSAGE)


# `meta`: free-form data a storefront keeps on a basket or an order. Bounded, because every read
# of the basket or order carries it: at most 8 KiB as JSON, 50 keys at any level, 5 levels.
META_MAX_BYTES = 8 * 1024
META_MAX_KEYS = 50
META_MAX_DEPTH = 5


def _empty_list_as_object(value: Any) -> Any:
    return {} if value == [] else value


def _check_meta(value: dict[str, Any]) -> dict[str, Any]:
    # Depth first, level by level: the size is measured by encoding, and orjson's encoder fails
    # (TypeError, not a validation error) past 255 levels.
    level = [value]
    for depth in range(1, META_MAX_DEPTH + 2):
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            break
        if depth > META_MAX_DEPTH:
            raise ValueError(f"meta may be nested at most {META_MAX_DEPTH} levels deep")
        if any(isinstance(item, dict) and len(item) > META_MAX_KEYS for item in containers):
            raise ValueError(f"meta objects may have at most {META_MAX_KEYS} keys")
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    if len(orjson.dumps(value)) > META_MAX_BYTES:
        raise ValueError(f"meta must be at most {META_MAX_BYTES} bytes as JSON")
    return value


# An object; an empty list is taken as the empty object (GetCandy's clients send PHP's `[]`).
Meta = Annotated[dict[str, Any], BeforeValidator(_empty_list_as_object), AfterValidator(_check_meta)]


def partial_update(body: BaseModel, nullable: frozenset[str] = frozenset()) -> tuple[dict[str, Any], int | None]:
    """An admin's partial update: the fields sent, and the `version` it was read at (None when
    not sent; the handler compares it under the row's lock). A field sent as null that may not be
    empty (not in `nullable`) is a 422."""
    given = body.model_dump(exclude_unset=True)
    expected = given.pop("version", None)
    errors = {
        name: [f"The {name} field may not be null."]
        for name, value in given.items()
        if value is None and name not in nullable
    }
    if errors:
        raise ValidationFailed(errors)
    return given, expected


def query_model(request: web.Request, model: type[M]) -> M:
    refuse_nul(dict(request.query))
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise ValidationFailed(validation_map(exc)) from exc


def includes(request: web.Request) -> set[str]:
    """`?include=a,b.c` (upstream also used `includes`); `b.c` implies `b`."""
    raw = ",".join(request.query.getall("include", []) + request.query.getall("includes", []))
    result: set[str] = set()
    for item in raw.split(","):
        item = item.strip()
        while item:
            result.add(item)
            item = item.rpartition(".")[0]
    return result


class PaginationMeta(BaseModel):
    current_page: int
    per_page: int
    total: int
    last_page: int
    from_: int | None = Field(alias="from")
    to: int | None
    path: str


class PaginationLinks(BaseModel):
    first: str
    last: str
    prev: str | None
    next: str | None


def wire_timestamp(value: datetime | None) -> str | None:
    """Upstream's timestamp shape: `2018-02-28T15:33:26.000000Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TransactionOut(BaseModel):
    """A payment transaction on the wire: payments' refund and void answers, and an order's
    `include=transactions` (orders keeps a projection of payments' events)."""

    id: str
    transaction_id: str
    merchant: str
    amount: int
    currency: str
    provider: str
    driver: str
    success: bool
    refund: bool
    status: str
    card_type: str | None
    last_four: str | None
    notes: str | None
    created_at: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> TransactionOut:
        """From a row of payments' ledger or of orders' projection of it (same column names)."""
        fields = {name: row[name] for name in cls.model_fields}
        return cls.model_validate({**fields, "created_at": wire_timestamp(row["created_at"])})


def paginated(request: web.Request, data: list[Any], *, page: int, per_page: int, total: int) -> dict[str, Any]:
    """The GetCandy list envelope: `data`, `meta` (Laravel's paginator fields) and `links`.

    Links are relative and keep the request's other parameters (filters, includes): behind the
    gateway, a service's own address must not reach the client.
    """
    last_page = max(1, -(-total // per_page))
    offset = (page - 1) * per_page
    others = {k: v for k, v in request.query.items() if k not in ("page", "per_page")}

    def link(number: int) -> str:
        return str(request.rel_url.with_query({"page": number, "per_page": per_page, **others}))

    return {
        "data": data,
        "meta": {
            "current_page": page,
            "per_page": per_page,
            "total": total,
            "last_page": last_page,
            "from": offset + 1 if data else None,
            "to": offset + len(data) if data else None,
            "path": request.path,
        },
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": link(page - 1) if page > 1 else None,
            "next": link(page + 1) if page < last_page else None,
        },
    }


def path_id(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    if not is_id(value):
        raise NotFound()
    return value


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    value = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else secrets.token_hex(16)
    request[REQUEST_ID] = value
    token = request_id_var.set(value)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = value
        raise
    finally:
        request_id_var.reset(token)
    response.headers[REQUEST_ID_HEADER] = value
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a GetCandy error body; no trace or SQL ever reaches a client."""
    try:
        return await handler(request)
    except ValidationFailed as exc:
        return json_response(exc.errors, status=422)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        message = DEFAULT_MESSAGES.get(exc.status) or exc.reason
        return error_response(exc.status, message, headers)
    except web.RequestPayloadError as exc:
        # The body could not be read as sent: a Content-Encoding that does not match it (not gzip
        # at all, truncated), or a broken chunked encoding. The rest of it cannot be skipped
        # reliably, so the connection closes after this answer rather than being reused.
        log.info("unreadable request body", extra={"path": request.path, "error": str(exc).strip()})
        response = error_response(400, "The request body could not be decoded as its Content-Encoding says")
        response.force_close()
        return response
    except UNAVAILABLE as exc:
        # The database or the broker went away mid-request: nothing was committed, a retry is safe.
        log.warning("dependency unavailable", extra={"path": request.path, "error": f"{type(exc).__name__}: {exc}"})
        return error_response(503, headers={"Retry-After": "1"})
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return error_response(500)


def identity(request: web.Request) -> dict[str, Any] | None:
    """Who the gateway says is calling (`shared.identity`): None when no identity was passed;
    a 401 when one was, but unsigned, badly signed, stale or malformed (never trusted because
    the header is present)."""
    raw = request.headers.get(IDENTITY_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    if raw is None and signature is None:
        return None
    try:
        return verify_identity(raw or "", signature or "", request.app.get(SIGNING_KEY, ""))
    except IdentityError as exc:
        log.warning("identity refused", extra={"path": request.path, "reason": str(exc)})
        raise ApiError(401) from exc


def require_admin(request: web.Request) -> dict[str, Any]:
    """Admin routes: the gateway verified the token and passed the identity, signed."""
    who = identity(request)
    if who is None:
        raise ApiError(401)
    if "admin" not in who["roles"]:
        raise ApiError(403)
    return who


def require_customer(request: web.Request) -> str:
    """A signed-in customer's routes: the gateway verified the customer's access token and passed
    the identity, signed. The customer's id; a 401 for anyone else."""
    who = identity(request)
    if who is None or CUSTOMER_ROLE not in who["roles"]:
        raise ApiError(401)
    return who["sub"]


def optional_customer(request: web.Request) -> str | None:
    """A guest's routes that also serve a signed-in customer (`customer="optional"`): the customer's
    id when the gateway passed one on, else None (a guest: no customer's basket or order is theirs).
    A 401 for an identity unsigned or badly signed, as everywhere."""
    who = identity(request)
    if who is None or CUSTOMER_ROLE not in who["roles"]:
        return None
    return who["sub"]


# What aiohttp decodes (br and zstd only with optional packages, so not offered); "identity" is
# no encoding at all.
CONTENT_ENCODINGS = frozenset({"gzip", "deflate", "identity"})
ACCEPTED_ENCODINGS = "gzip, deflate"


def refuse_unknown_encoding(request: web.Request) -> None:
    """A body in an encoding we cannot decode is a 415 (RFC 9110 15.5.16, with `Accept-Encoding`),
    before anything reads it: aiohttp would otherwise hand the still-encoded bytes on as the body.
    One coding only: a list (`gzip, br`) would be decoded partly or not at all."""
    codings = request.headers.getall("Content-Encoding", [])
    if codings and request.body_exists:
        coding = ",".join(codings).strip().lower()
        if coding not in CONTENT_ENCODINGS:
            raise ApiError(
                415,
                f"Content-Encoding {coding[:40]!r} is not supported: use {ACCEPTED_ENCODINGS} or none",
                headers={"Accept-Encoding": ACCEPTED_ENCODINGS},
            )


# Methods whose body means something; a GET's is never read (RFC 9110 gives it no meaning).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_BODY = web.RequestKey("json_body", dict)


def body_middleware(timeout: float) -> Callable:
    """Every body of a service, checked once before any handler or idempotency claim sees it: a
    known encoding that decodes (415, 400), within the size limit (413), JSON (400: `parse_json`)
    and an object (422), as every body of this API is. An operation that takes no body still gets
    these checks, so hostile bytes never reach a handler that would act while ignoring them.

    The whole body must arrive within `timeout` seconds, else a 408 that closes the connection:
    a client trickling its body holds a connection (and nothing else: no pooled connection is
    taken before the body is in) no longer than that. Only the gateway reaches a service, and it
    sends a body it has already received whole, so this bounds a misbehaving peer, not a client.
    """

    @web.middleware
    async def body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in BODY_METHODS and request.match_info.http_exception is None:
            refuse_unknown_encoding(request)
            raw = b""
            if request.body_exists:
                try:
                    async with asyncio.timeout(timeout):
                        raw = await request.read()
                except TimeoutError:
                    return _body_too_slow(request, timeout)
            data = parse_form(raw) if request.content_type == FORM_CONTENT_TYPE else parse_json(raw)
            if not isinstance(data, dict):
                raise ValidationFailed.one("body", "The request body must be a JSON object")
            request[JSON_BODY] = data
        return await handler(request)

    return body


def _body_too_slow(request: web.Request, timeout: float) -> web.Response:
    log.info("request body too slow", extra={"path": request.path, "timeout": timeout})
    response = error_response(408, f"The request body did not arrive within {timeout:g} s")
    # The rest of the body may still come, and could not be told from a next request.
    response.force_close()
    return response


def standard_middlewares() -> list:
    return [request_id_middleware, error_middleware]
