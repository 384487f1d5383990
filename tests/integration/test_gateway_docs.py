"""The gateway's /docs and /redoc work offline: every script, style sheet and icon they load is
served by the gateway itself, from the package's own assets."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from tests.support import GATEWAY_KEY, GatewayProcess

pytestmark = pytest.mark.integration


class _Refs(HTMLParser):
    """Every src and href in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.refs


@pytest.fixture(scope="module")
def gateway(redis_server, tmp_path_factory):
    env = {
        "REDIS_URL": redis_server.url,
        "VIDGO_STEMS_GATEWAY_API_KEYS": GATEWAY_KEY,
        "STEMS_DIR": str(tmp_path_factory.mktemp("docs") / "stems"),
    }
    server = GatewayProcess(env, tmp_path_factory.mktemp("docs-log") / "gateway.log")
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon-32x32.png"}),
    ],
)
def test_a_docs_page_names_no_other_host_and_each_asset_answers_from_the_gateway(
    gateway, page, expected
):
    answer = httpx.get(gateway.url + page, timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert not re.search(r"(https?:)?//[A-Za-z0-9]", html), re.findall(r"\S*//\S*", html)
    refs = references(html)
    assert {ref.rsplit("/", 1)[-1] for ref in refs} == expected
    for ref in refs:
        assert ref.startswith("/docs-assets/"), ref
        asset = httpx.get(gateway.url + ref, timeout=10)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 500, ref
    assert "/openapi.json" in html
    assert httpx.get(gateway.url + "/openapi.json", timeout=10).status_code == 200


def test_an_unknown_asset_is_a_404_and_nothing_outside_the_assets_is_served(gateway):
    assert httpx.get(gateway.url + "/docs-assets/swagger-ui/nope.js").status_code == 404
    # ".." spelt so that no client folds it away before it reaches the gateway.
    escape = httpx.get(gateway.url + "/docs-assets/swagger-ui/%2e%2e/%2e%2e/docs.py")
    assert escape.status_code == 404
    assert httpx.get(gateway.url + "/docs-assets/README.md").status_code == 200
