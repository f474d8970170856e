"""One source of truth: the services' operation tables make the OpenAPI document, the document makes
the gateway's route table. The document is valid and up to date; every operation a service declares
is the one it serves and is routed to it by the gateway; and the docs page is served with all its
assets by the gateway alone."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from gateway import openapi
from gateway.app import create_app
from gateway.routes import DocumentError, Route, load_routes, routes_from
from gateway.settings import GatewaySettings
from shared.operations import OPTIONAL, PREFIX, Operation
from shared.settings import ServiceSettings

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(openapi.DOCUMENT_PATH.read_text())


@pytest.fixture(scope="module")
def operations() -> dict[str, list[Operation]]:
    return openapi.load_operations()


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_document_is_up_to_date_with_the_services_operations(operations):
    assert openapi.render(openapi.build_document(operations)) == openapi.DOCUMENT_PATH.read_text(), (
        "gateway/openapi.json is out of date: run `python -m gateway.openapi` and commit the result"
    )


def _concrete(path: str) -> str:
    return re.sub(r"{\w+}", "abcdef12", path)  # an id of the shape every service accepts


async def test_every_service_operation_is_served_by_the_gateway_and_routed_to_its_owner(operations):
    app = create_app(GatewaySettings())
    expected = set()
    for service, ops in operations.items():
        for op in ops:
            match = await app.router.resolve(make_mocked_request(op.method, PREFIX + _concrete(op.path)))
            assert match.http_exception is None, (service, op.method, op.path)
            assert match.route.resource.canonical == PREFIX + op.path, (service, op.method, op.path)
            assert match.route.handler.__name__ == f"forward_{service}", (service, op.method, op.path)
            expected.add(
                Route(
                    op.method,
                    op.path,
                    service,
                    op.admin,
                    op.timeout,
                    op.summary,
                    repeatable=op.repeatable,
                    customer=op.customer,
                )
            )
    # What the gateway knows of each operation is exactly what its service declared.
    assert set(load_routes()) == expected


def _service_app(service: str) -> web.Application:
    module = importlib.import_module(f"{service}.settings")
    (settings_class,) = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, ServiceSettings) and value is not ServiceSettings
    ]
    return importlib.import_module(f"{service}.app").create_app(settings_class())


@pytest.mark.parametrize("service", openapi.SERVICES)
def test_a_service_serves_exactly_the_operations_it_declares(service, operations):
    served = {
        (route.method, route.resource.canonical.removeprefix(PREFIX)): route.handler
        for route in _service_app(service).router.routes()
        if route.resource is not None and route.resource.canonical.startswith(PREFIX + "/") and route.method != "HEAD"
    }
    declared = {(op.method, op.path): op.handler for op in operations[service]}
    assert served.keys() - declared.keys() == set(), "served but not declared in its routes.OPERATIONS"
    assert declared.keys() - served.keys() == set(), "declared but not served"
    assert served == declared, "served by another handler than the one declared"


def served_operations() -> set[tuple[str, str]]:
    app = create_app(GatewaySettings())
    served = set()
    for resource in app.router.resources():
        path = resource.canonical
        if not path.startswith(PREFIX + "/"):
            continue  # /health/*, /docs: operational, not the API
        for route in resource:
            if route.method != "HEAD":
                served.add((route.method, path.removeprefix(PREFIX)))
    return served


def test_every_served_route_is_documented_and_every_documented_one_is_served(document):
    documented = {(m.upper(), path) for path, item in document["paths"].items() for m in item if m in METHODS}
    served = served_operations()
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    assert document["servers"] == [{"url": PREFIX}]


async def test_a_literal_segment_is_matched_before_an_id():
    app = create_app(GatewaySettings())
    for method, path, resource in (
        ("PUT", "/products/variants/abcdef12", "/products/variants/{id}"),
        ("GET", "/products/variants/abcdef12", "/products/variants/{id}"),
        ("GET", "/products/abcdef12", "/products/{id}"),
    ):
        match = await app.router.resolve(make_mocked_request(method, PREFIX + path))
        assert match.route.resource.canonical == PREFIX + resource, (method, path)


async def test_served_document_is_the_checked_in_file(gateway):
    response = await gateway.get("/api/v1/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == openapi.DOCUMENT_PATH.read_bytes()


def test_the_gateways_facts_are_recorded_per_operation(document):
    process = document["paths"]["/orders/process"]["post"]
    assert process["x-commerce-service"] == "orders"
    assert process["x-commerce-repeatable"] is True
    assert process["x-commerce-timeout"] == 30.0
    zones = document["paths"]["/shipping/zones"]["get"]
    assert (zones["x-commerce-service"], zones["x-commerce-admin"]) == ("shipping", True)
    assert "x-commerce-timeout" not in zones  # the gateway's default
    for path, item in document["paths"].items():
        for method, op in item.items():
            if path != "/openapi.json":
                assert op["tags"] == [op["x-commerce-service"]], (method, path)


def test_admin_operations_require_a_bearer_token_and_storefront_ones_do_not(document):
    for scheme in ("bearerAuth", "customerAuth"):
        assert document["components"]["securitySchemes"][scheme] == {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": document["components"]["securitySchemes"][scheme]["description"],
        }
    for route in load_routes():
        op = document["paths"][route.path][route.method.lower()]
        if route.admin:
            # With `customer` too (GET /orders): an admin's token or a customer's.
            assert op["security"] == [{"bearerAuth": []}] + ([{"customerAuth": []}] if route.customer else []), route
            assert {"401", "403"} <= set(op["responses"]), route
        elif route.customer == OPTIONAL:
            assert op["security"] == [{}, {"customerAuth": []}], route  # a guest's or a customer's
            assert "401" in op["responses"], route
        elif route.customer:
            assert op["security"] == [{"customerAuth": []}], route
            assert "401" in op["responses"], route
        else:
            assert "security" not in op, route
            assert "401" not in op["responses"], route


def test_every_post_takes_an_idempotency_key(document):
    for route in load_routes():
        op = document["paths"][route.path][route.method.lower()]
        has_key = {"$ref": "#/components/parameters/IdempotencyKey"} in op.get("parameters", [])
        assert has_key == (route.method == "POST"), route
        if route.method == "POST":
            assert {"400", "409", "422"} <= set(op["responses"]), route


def test_shared_patterns_are_the_ones_the_services_enforce(document):
    from shared.http import ID_PATTERN
    from shared.idempotency import KEY_PATTERN

    parameters = document["components"]["parameters"]
    assert parameters["PathId"]["schema"]["pattern"] == ID_PATTERN.pattern
    assert parameters["IdempotencyKey"]["schema"]["pattern"] == KEY_PATTERN.pattern


def test_errors_share_the_getcandy_components(document):
    responses = document["components"]["responses"]
    # A 422 is the flat map for fields, or the error body for the request as a whole.
    assert responses["ValidationFailed"]["content"]["application/json"]["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/ValidationErrors"}, {"$ref": "#/components/schemas/Error"}]
    }
    for name, response in responses.items():
        if name != "ValidationFailed":
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert responses["TooManyRequests"]["headers"]["Retry-After"]["required"] is True
    for route in load_routes():
        op = document["paths"][route.path][route.method.lower()]
        assert {"429", "502", "503", "504"} <= set(op["responses"]), route
        if "{id}" in route.path:
            assert "404" in op["responses"], route


# ---------------------------------------------------------------------------------------------
# The generator and the loader on operations made up here (independent of the services)


class Weight(BaseModel):
    value: int
    unit: str


class ThingIn(BaseModel):
    name: str = Field(max_length=10)
    weight: Weight


class ThingOut(BaseModel):
    data: dict[str, Any]


class ThingsQuery(BaseModel):
    page: int = Field(default=1, ge=1)
    per_page: int | None = Field(default=None, ge=1, le=50, description="Items per page")


def other_weight() -> type[BaseModel]:
    class Weight(BaseModel):  # another service's model of the same name
        grams: int

    return Weight


async def handler(request: web.Request) -> web.Response:
    raise NotImplementedError


def test_generator_builds_operations_from_models():
    class Holder(BaseModel):
        weight: other_weight()  # type: ignore[valid-type]

    ops = {
        "basket": [
            Operation("POST", "/things", handler, "Make", admin=True, request=ThingIn, response=ThingOut, status=201),
            Operation("GET", "/things", handler, "List", query=ThingsQuery, response=ThingOut, repeatable=True),
            Operation("GET", "/things/{id}", handler, "One", response=ThingOut, errors=(404,)),
            Operation("GET", "/things/special/{id}", handler, "Special", response=ThingOut),
        ],
        "orders": [Operation("GET", "/holders/{id}", handler, "Hold", response=Holder, timeout=12.5)],
    }
    doc = openapi.build_document(ops)
    validate(doc)
    post = doc["paths"]["/things"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ThingIn"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ThingOut"
    }
    assert post["security"] == [{"bearerAuth": []}]
    assert doc["components"]["schemas"]["ThingIn"]["properties"]["weight"] == {"$ref": "#/components/schemas/Weight"}

    params = {p["name"]: p for p in doc["paths"]["/things"]["get"]["parameters"]}
    assert params["page"]["in"] == "query" and params["page"]["required"] is False
    assert params["page"]["schema"]["minimum"] == 1
    # pydantic's `ge`/`le` on an optional number become JSON Schema bounds.
    assert params["per_page"]["schema"]["anyOf"][0] == {"minimum": 1, "maximum": 50, "type": "integer"}
    assert params["per_page"]["description"] == "Items per page"

    # Two services with different `Weight` models: the later one is renamed, its refs follow.
    holder = doc["components"]["schemas"]["Holder"]
    assert holder["properties"]["weight"] == {"$ref": "#/components/schemas/OrdersWeight"}
    assert doc["components"]["schemas"]["OrdersWeight"]["properties"] == {
        "grams": {"title": "Grams", "type": "integer"}
    }

    # A literal segment comes before an id, whatever the order of the table.
    assert list(doc["paths"]) == ["/things", "/things/special/{id}", "/things/{id}", "/holders/{id}", "/openapi.json"]
    assert [t["name"] for t in doc["tags"]] == ["basket", "orders", "meta"]

    # The gateway's table, read back from the document.
    assert set(routes_from(doc)) == {
        Route("GET", "/things", "basket", summary="List", repeatable=True),
        Route("POST", "/things", "basket", admin=True, summary="Make"),
        Route("GET", "/things/special/{id}", "basket", summary="Special"),
        Route("GET", "/things/{id}", "basket", summary="One"),
        Route("GET", "/holders/{id}", "orders", timeout=12.5, summary="Hold"),
    }


def test_generator_rejects_an_operation_declared_twice_or_a_malformed_path():
    twice = {
        "basket": [Operation("GET", "/things", handler, "List")],
        "orders": [Operation("GET", "/things", handler, "List again")],
    }
    with pytest.raises(openapi.DocumentError, match="declared by basket already"):
        openapi.build_document(twice)
    with pytest.raises(openapi.DocumentError, match="without /api/v1"):
        openapi.build_document({"basket": [Operation("GET", "/api/v1/things", handler, "List")]})
    with pytest.raises(openapi.DocumentError, match="gateway's own"):
        openapi.build_document({"basket": [Operation("GET", "/openapi.json", handler, "Mine")]})


def test_loader_refuses_a_document_without_the_gateways_facts():
    doc = openapi.build_document({"basket": [Operation("GET", "/things", handler, "List")]})
    del doc["paths"]["/things"]["get"]["x-commerce-service"]
    with pytest.raises(DocumentError, match="regenerate"):
        routes_from(doc)


def test_check_mode_reports_drift(tmp_path):
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    assert openapi.main(["--check", "--output", str(stale)]) == 1
    assert openapi.main(["--output", str(stale)]) == 0
    assert openapi.main(["--check", "--output", str(stale)]) == 0


# ---------------------------------------------------------------------------------------------
# The docs page


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.links.append(value)


async def test_docs_page_and_every_asset_load_from_the_gateway_alone(gateway):
    response = await gateway.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    html = await response.text()
    parser = _Links()
    parser.feed(html)
    assert len(parser.links) >= 4
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    scripts = []
    for link in parser.links:
        assert link.startswith("/") and not link.startswith("//"), f"{link} is not on the gateway"
        asset = await gateway.get(link)
        assert asset.status == 200, link
        body = await asset.read()
        assert len(body) > 0, link
        suffix = link[link.rfind(".") :]
        assert asset.content_type in (expected_types[suffix], "application/javascript"), link
        if suffix == ".js":
            scripts.append(body.decode())
    # Our start-up script loads the document from the gateway, and never the online validator.
    ours = next(s for s in scripts if "SwaggerUIBundle(" in s and "url:" in s)
    document_url = re.search(r'url:\s*"([^"]+)"', ours).group(1)
    assert document_url == "/api/v1/openapi.json"
    assert "validatorUrl: null" in ours
    assert (await gateway.get(document_url)).status == 200
    # The bundle is Swagger UI 5, which renders OpenAPI 3.1.
    bundle = next(s for s in scripts if len(s) > 100_000)
    assert "3.1" in bundle


async def test_docs_serve_only_known_assets(gateway):
    for name in ("../openapi.py", "..%2Fopenapi.py", "index.html", "swagger-ui.js.map", "nope.js"):
        response = await gateway.get(f"/docs/assets/{name}")
        assert response.status == 404, name
        assert (await response.json())["error"]["http_code"] == 404
