"""The human docs page at `/docs`: Swagger UI from an installed package, on our own document.

The page, its script and every asset come from the gateway (the `swagger-ui-bundle-v2` wheel
ships Swagger UI's files; the page and its start-up script are ours), so it works offline.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

STATIC = Path(__file__).with_name("static")

# The only files served under /docs/assets: ours, then Swagger UI's.
ASSETS: dict[str, Path] = {
    "docs.js": STATIC / "docs.js",
    "docs.css": STATIC / "docs.css",
    **{
        name: Path(str(swagger_ui_path)) / name
        for name in ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
    },
}

# Scripts and styles from this origin only; Swagger UI sets inline styles and shows data: images.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def page(request: web.Request) -> web.Response:
    return web.Response(
        body=(STATIC / "docs.html").read_bytes(),
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


async def asset(request: web.Request) -> web.StreamResponse:
    path = ASSETS.get(request.match_info["name"])
    if path is None or not path.is_file():
        raise web.HTTPNotFound()
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "public, max-age=3600"})


def add_docs_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/docs", page)
    app.router.add_route("GET", "/docs/assets/{name}", asset)
