"""The OpenAPI document lists every error status the API answers (400, 401, 403, 404, 409, 413, 429, 503) in
the body it sends, and the node-link bodies it shows are the ones the server takes: a body at a documented
limit is accepted, one past it is refused."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import register_message

pytestmark = pytest.mark.django_db(transaction=True)

ERRORS = {"400", "401", "403", "404", "409", "413", "429", "503"}


def test_every_operation_documents_every_error_status(server):
    document = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert set(operation["responses"]) >= ERRORS, (method, path)
            body = operation["responses"]["429"]["content"]["application/json"]["schema"]["$ref"]
            expected = "ErrorFrame" if "/node-link/" in path else "ApiError"
            assert body == f"#/components/schemas/{expected}", (method, path)
            assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert document["components"]["schemas"]["ApiError"]["required"] == ["error"]


def test_the_node_link_schemas_state_the_limits_the_server_applies(server, node_token):
    document = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    register = document["paths"]["/api/v1/node-link/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    version_limit = register["properties"]["version"]["maxLength"]
    assert version_limit == 64
    assert register["properties"]["dispatch_url"]["pattern"].startswith("^https?://")
    assert register["properties"]["hardware"]["properties"]["cpu_cores"]["minimum"] == 1
    messages = document["paths"]["/api/v1/node-link/{node_id}/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    kinds = {option["properties"]["type"]["const"] for option in messages["oneOf"]}
    assert "node_register" not in kinds
    assert "node_heartbeat" in kinds

    headers = {"Authorization": f"Bearer {node_token}"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        at_limit = client.post(
            "/api/v1/node-link/register",
            json=register_message(dispatch_url="http://127.0.0.1:9/", version="v" * version_limit),
        )
        past_limit = client.post(
            "/api/v1/node-link/register",
            json=register_message(dispatch_url="http://127.0.0.1:9/", version="v" * (version_limit + 1)),
        )
    assert at_limit.status_code == 200, at_limit.text
    assert past_limit.status_code == 400
