"""The OpenAPI document: valid, generated from the services' models without drift, covering exactly the
routes the gateway serves; and the docs page, served with all its assets by the gateway alone."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from gateway import openapi
from gateway.app import create_app
from gateway.routes import PREFIX, ROUTES, Route
from gateway.settings import GatewaySettings

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(openapi.DOCUMENT_PATH.read_text())


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_document_is_up_to_date_with_the_services_models(document):
    assert openapi.render(openapi.build_document()) == openapi.DOCUMENT_PATH.read_text(), (
        "gateway/openapi.json is out of date: run `python -m gateway.openapi` and commit the result"
    )


def test_every_operations_entry_names_a_route_of_its_service():
    assert openapi.check_operations(ROUTES, openapi.load_operations()) == []


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


async def test_served_document_is_the_checked_in_file(gateway):
    response = await gateway.get("/api/v1/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == openapi.DOCUMENT_PATH.read_bytes()


def test_admin_operations_require_a_bearer_token_and_storefront_ones_do_not(document):
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for route in ROUTES:
        op = document["paths"][route.path][route.method.lower()]
        if route.admin:
            assert op["security"] == [{"bearerAuth": []}], route
            assert {"401", "403"} <= set(op["responses"]), route
        else:
            assert "security" not in op, route
            assert "401" not in op["responses"], route


def test_every_post_takes_an_idempotency_key(document):
    for route in ROUTES:
        op = document["paths"][route.path][route.method.lower()]
        has_key = {"$ref": "#/components/parameters/IdempotencyKey"} in op.get("parameters", [])
        assert has_key == (route.method == "POST"), route
        if route.method == "POST":
            assert {"400", "409", "422"} <= set(op["responses"]), route


def test_errors_share_the_getcandy_components(document):
    responses = document["components"]["responses"]
    assert responses["ValidationFailed"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrors"
    }
    for name, response in responses.items():
        if name != "ValidationFailed":
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert responses["TooManyRequests"]["headers"]["Retry-After"]["required"] is True
    for route in ROUTES:
        op = document["paths"][route.path][route.method.lower()]
        assert {"429", "502", "503", "504"} <= set(op["responses"]), route
        if "{id}" in route.path:
            assert "404" in op["responses"], route


# ---------------------------------------------------------------------------------------------
# The generator on models made up here (independent of the services' progress)


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


ROUTES_UNDER_TEST = (
    Route("POST", "/things", "basket", admin=True),
    Route("GET", "/things", "basket"),
    Route("GET", "/things/{id}", "orders"),
    Route("GET", "/pending/{id}", "orders"),
)


def test_generator_builds_operations_from_models():
    class Holder(BaseModel):
        weight: other_weight()  # type: ignore[valid-type]

    ops = {
        "basket": {
            ("POST", "/things"): {"request": ThingIn, "response": ThingOut, "status": 201, "errors": [422]},
            ("GET", "/things"): {"request": None, "query": ThingsQuery, "response": ThingOut, "errors": []},
        },
        "orders": {("GET", "/things/{id}"): {"request": None, "response": Holder, "status": 200, "errors": [404]}},
    }
    doc = openapi.build_document(ops, ROUTES_UNDER_TEST)
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

    pending = doc["paths"]["/pending/{id}"]["get"]
    assert pending["x-commerce-pending"] is True
    assert "404" in pending["responses"] and "default" in pending["responses"]


def test_generator_rejects_operations_without_a_route():
    ops = {"basket": {("GET", "/nowhere"): {"request": None, "response": ThingOut}}}
    with pytest.raises(openapi.DocumentError, match=r"not in gateway/routes\.py"):
        openapi.build_document(ops, ROUTES_UNDER_TEST)
    ops = {"orders": {("GET", "/things"): {"request": None, "response": ThingOut}}}
    with pytest.raises(openapi.DocumentError, match="routes to basket"):
        openapi.build_document(ops, ROUTES_UNDER_TEST)


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
