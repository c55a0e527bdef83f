"""/api/v1/docs on a machine without internet access: Swagger UI's script and styles come from the scheduler
itself, so the page renders every operation of the API while every request to another host is refused."""

from __future__ import annotations

import httpx
import pytest

from tests.support.browser import operator_page, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.timeout(90)
async def test_the_api_docs_render_their_operations_with_no_network_access(start_server):
    server = start_server(LOG_LEVEL="WARNING")
    schema = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=10).json()
    operations = sum(
        method in ("get", "post", "put", "patch", "delete") for path in schema["paths"].values() for method in path
    )
    assert operations >= 10, schema["paths"].keys()

    async with operator_page(server.url, offline=True) as page:
        await page.goto(f"{server.url}/api/v1/docs", wait_until="networkidle")
        # Swagger UI renders after it has fetched and parsed the schema, which can come after the network is
        # idle on a loaded machine: wait for the operations to appear (a page that never renders times out).
        await page.locator(".opblock").first.wait_for(timeout=30_000)
        await screenshot(page, "api-docs")
        assert await page.locator(".opblock").count() == operations
        assert "Submit a job" in await page.inner_text("#swagger-ui")
        assert page.blocked_requests == []
