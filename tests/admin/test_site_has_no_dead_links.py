"""The admin's header links lead somewhere: no "View site" to a page that does not exist, a link to the API
docs, and the favicon browsers ask for on every page is served instead of logged as a 404."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_header_has_no_view_site_link_and_links_the_api_docs(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert "View site" not in page
    assert 'href="/api/v1/docs"' in page
    assert admin_client.get("/api/v1/docs").status_code == 200


def test_the_favicon_is_served_and_cached(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml" and b"<svg" in response.content
    assert "max-age" in response["Cache-Control"]
