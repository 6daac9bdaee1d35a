"""The dashboard's static files are served open (the page signs in itself), locked to this origin."""

from __future__ import annotations

from tests.integration.test_api_helpers import Api

pytest_plugins = ["tests.integration.test_api_helpers"]


async def test_the_page_and_its_assets_need_no_token(api: Api) -> None:
    async with api.client.get("/dashboard", allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == "/dashboard/"
    for path, content_type in (
        ("/dashboard/", "text/html"),
        ("/dashboard/style.css", "text/css"),
        *((f"/dashboard/{name}.js", "text/javascript") for name in ("api", "words", "forms", "jobs", "job", "app")),
    ):
        async with api.client.get(path) as response:
            assert response.status == 200, path
            assert response.content_type == content_type
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert len(await response.read()) > 500
    async with api.client.get("/dashboard/") as response:
        page = await response.text()
    assert '<script src="/dashboard/app.js" defer></script>' in page and 'id="sign-in-form"' in page
    assert '<link rel="icon" href="data:,">' in page  # no /favicon.ico request, so no 401 for it


async def test_nothing_else_is_served_from_the_package(api: Api) -> None:
    for path in ("/dashboard/__init__.py", "/dashboard/../app.py", "/dashboard/index.html.bak", "/dashboard/other.js"):
        async with api.client.get(path) as response:
            assert response.status in (401, 404), path
