"""The OpenAPI document lists every route, and the interactive docs work for staff in a browser."""

from __future__ import annotations

import re

import pytest
from django.test import AsyncClient
from django.urls import URLPattern

from scheduler.api import api

pytestmark = pytest.mark.django_db(transaction=True)

# Routes Ninja adds for the document itself.
DOC_ROUTES = {"openapi.json", "docs", ""}


def api_routes() -> set[str]:
    patterns, _, _ = api.urls
    routes = set()
    for pattern in patterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern)
        if route not in DOC_ROUTES:
            routes.add("/api/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return routes


async def test_every_route_is_in_the_openapi_document() -> None:
    response = await AsyncClient().get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert api_routes() == set(document["paths"])
    assert "/api/v1/nodes/{node_id}/drain" in document["paths"]


async def test_the_document_declares_auth_and_hides_node_secrets() -> None:
    document = (await AsyncClient().get("/api/v1/openapi.json")).json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiAuth"] == {"type": "http", "scheme": "bearer"}
    assert document["paths"]["/api/v1/nodes"]["get"]["security"] == [{"ApiAuth": []}]
    assert document["paths"]["/api/v1/node-link/register"]["post"]["security"] == [{"NodeTokenAuth": []}]
    node = document["components"]["schemas"]["NodeOut"]["properties"]
    assert not {"token_id", "channel"} & set(node)


async def test_the_node_link_bodies_are_documented_without_dangling_references() -> None:
    document = (await AsyncClient().get("/api/v1/openapi.json")).json()

    register = document["paths"]["/api/v1/node-link/register"]["post"]["requestBody"]
    schema = register["content"]["application/json"]["schema"]
    assert "dispatch_url" in schema["required"]
    assert schema["properties"]["hardware"]["properties"]["cpu_cores"]["type"] == "integer"
    assert "$defs" not in str(document)


async def test_the_docs_page_sends_the_csrf_token_for_staff_sessions() -> None:
    response = await AsyncClient().get("/api/v1/docs")

    assert response.status_code == 200
    # Swagger UI's own init script (no inline script, for the CSP) sends the token found on <body>.
    assert b'data-api-csrf="true"' in response.content
    assert b'data-csrf-token=""' not in response.content
    assert b"/api/v1/openapi.json" in response.content
