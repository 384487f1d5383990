"""The gateway's API documentation pages, served from the package's own assets.

FastAPI's ``/docs`` (Swagger UI) and ``/redoc`` load their scripts from a CDN by default and are
blank offline or behind a strict egress policy. Here both pages point at copies shipped in
``worker/web/assets`` (see its README for versions and licences), served under
``/docs-assets``, so the pages reference no other host.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Resolved: under an editable install the package is a tree of links to these files.
ASSETS = Path(__file__).resolve().parent / "assets"
ASSETS_URL = "/docs-assets"


def add_docs_routes(app: FastAPI) -> None:
    """``GET /docs`` and ``GET /redoc`` on local assets; the app must be built with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not added too."""
    favicon = f"{ASSETS_URL}/swagger-ui/favicon-32x32.png"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=favicon,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
