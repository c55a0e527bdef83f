"""Every API error has PROTOCOL's shape `{"error": {"code", "message", "details"}}`, is logged once and counted."""

from __future__ import annotations

import logging

import pytest

from nodes import services
from tests.api.conftest import KeyClient, metric

pytestmark = pytest.mark.django_db(transaction=True)

NODES = "/api/v1/nodes"


@pytest.fixture
async def operator(issue_key) -> KeyClient:
    return KeyClient(await issue_key("nodes:read", "nodes:write"))


async def test_a_not_found_error_has_the_uniform_shape(operator: KeyClient) -> None:
    response = await operator.get(f"{NODES}/node-00000000")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": "NOT_FOUND", "message": "no node 'node-00000000'", "details": {}}
    }


async def test_a_bad_query_value_is_a_400_whose_details_name_the_field(operator: KeyClient) -> None:
    response = await operator.get(f"{NODES}?status=sleeping")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    [field] = error["details"]["fields"]
    assert (field["field"], field["in"]) == ("status", "query")
    assert "ready" in field["problem"]


async def test_a_bad_body_field_is_named_as_the_client_sent_it(operator: KeyClient) -> None:
    response = await operator.post(
        f"{NODES}/node-00000000/drain", {"reason": "x" * 201}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == [
        {"field": "reason", "in": "body", "problem": "String should have at most 200 characters"}
    ]


async def test_a_body_that_is_not_json_is_a_400(operator: KeyClient) -> None:
    response = await operator.post(f"{NODES}/node-00000000/drain", "{oops", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"


async def test_an_unexpected_failure_is_a_json_500_without_the_traceback(
    operator: KeyClient, monkeypatch, settings, caplog
) -> None:
    async def broken(**filters: str) -> list:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(services, "list_nodes", broken)
    settings.DEBUG = True  # even then

    response = await operator.get(NODES)

    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "INTERNAL_ERROR", "message": "internal error; it has been logged", "details": {}}
    }
    assert b"Traceback" not in response.content
    assert b"internal detail" not in response.content
    [record] = [r for r in caplog.records if r.name == "scheduler.api"]
    assert "internal detail that must not leak" in caplog.text
    assert record.exc_info is not None


async def test_each_error_is_logged_once_and_counted_by_code(operator: KeyClient, caplog) -> None:
    caplog.set_level(logging.INFO)
    before = await metric("scheduler_api_errors_total", code="NOT_FOUND")

    await operator.get(f"{NODES}/node-00000000")

    assert await metric("scheduler_api_errors_total", code="NOT_FOUND") == before + 1
    assert [
        (r.name, r.code)
        for r in caplog.records
        if r.levelno >= logging.INFO and "node-00000000" in r.getMessage()
    ] == [("scheduler.api", "NOT_FOUND")]


def test_an_unknown_api_path_answers_json_404(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
