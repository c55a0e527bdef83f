"""Who may call the REST API: API keys with scopes, or logged-in staff in a browser."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.utils import timezone

from access.models import ApiKey
from tests.api.conftest import HttpNode, bearer, metric

pytestmark = pytest.mark.django_db(transaction=True)

NODES = "/api/v1/nodes"


def key_id(plaintext: str) -> str:
    return plaintext.partition(".")[0]


async def make_user(username: str, *, staff: bool) -> User:
    return await database_sync_to_async(User.objects.create_user)(username, password="pw-for-tests", is_staff=staff)


async def test_a_request_without_credentials_is_refused_with_401() -> None:
    response = await AsyncClient().get(NODES)

    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "UNAUTHORIZED", "message": "send 'Authorization: Bearer <api key>'", "details": {}}
    }


@pytest.mark.parametrize("header", ["Token abc.def", "Bearer", "Bearer   ", "Bearer no-dot-in-it"])
async def test_a_malformed_authorization_header_is_refused_with_401(header: str) -> None:
    response = await AsyncClient().get(NODES, headers={"Authorization": header})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_an_unknown_key_or_a_wrong_secret_is_refused_with_401(issue_key) -> None:
    good = await issue_key("nodes:read")

    unknown = await AsyncClient().get(NODES, headers=bearer("ak_000000000000.whatever"))
    wrong_secret = await AsyncClient().get(NODES, headers=bearer(f"{key_id(good)}.not-the-secret"))

    assert unknown.status_code == 401
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"]["message"] == "unknown API key"


async def test_a_key_with_the_endpoints_scope_is_let_in(issue_key) -> None:
    response = await AsyncClient().get(NODES, headers=bearer(await issue_key("nodes:read")))

    assert response.status_code == 200


async def test_a_key_without_the_endpoints_scope_is_refused_with_403(issue_key) -> None:
    reader = await issue_key("nodes:read", "jobs:write")

    response = await AsyncClient().post(f"{NODES}/node-00000000/drain", headers=bearer(reader))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert response.json()["error"]["details"] == {"required_scope": "nodes:write"}


async def test_a_revoked_key_is_refused_with_401(issue_key) -> None:
    key = await issue_key("nodes:read")
    await database_sync_to_async(ApiKey.objects.filter(pk=key_id(key)).update)(revoked_at=timezone.now())

    response = await AsyncClient().get(NODES, headers=bearer(key))

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "this API key was revoked"


async def test_an_expired_key_is_refused_with_401(issue_key) -> None:
    key = await issue_key("nodes:read", expires_at=timezone.now() - timedelta(seconds=1))

    response = await AsyncClient().get(NODES, headers=bearer(key))

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "this API key has expired"


async def test_refusals_are_counted_by_reason(issue_key) -> None:
    key = await issue_key("jobs:read")
    before = await metric("scheduler_api_auth_rejections_total", reason="scope")

    await AsyncClient().get(NODES, headers=bearer(key))

    assert await metric("scheduler_api_auth_rejections_total", reason="scope") == before + 1


async def test_the_secret_of_a_key_is_never_logged_but_its_id_is(issue_key, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = await issue_key("jobs:read")
    secret = key.partition(".")[2]

    await AsyncClient().get(NODES, headers=bearer(key))
    await AsyncClient().get(NODES, headers=bearer(f"{key_id(key)}.{secret}x"))

    assert secret not in caplog.text
    assert [r.token_id for r in caplog.records if r.name == "scheduler.api"] == [key_id(key), key_id(key)]


async def test_last_use_is_recorded_at_most_once_a_minute(issue_key) -> None:
    key = await issue_key("nodes:read")
    get_key = database_sync_to_async(lambda: ApiKey.objects.get(pk=key_id(key)))
    set_last_used = database_sync_to_async(lambda at: ApiKey.objects.filter(pk=key_id(key)).update(last_used_at=at))

    await AsyncClient().get(NODES, headers=bearer(key))
    assert (await get_key()).last_used_at is not None

    recent = timezone.now() - timedelta(seconds=30)
    await set_last_used(recent)
    await AsyncClient().get(NODES, headers=bearer(key))
    assert (await get_key()).last_used_at == recent

    old = timezone.now() - timedelta(minutes=2)
    await set_last_used(old)
    await AsyncClient().get(NODES, headers=bearer(key))
    assert (await get_key()).last_used_at > recent


async def test_a_logged_in_staff_user_may_use_the_api_from_the_browser() -> None:
    client = AsyncClient()
    await client.aforce_login(await make_user("operator", staff=True))

    response = await client.get(NODES)

    assert response.status_code == 200


async def test_a_logged_in_user_who_is_not_staff_is_refused_with_403() -> None:
    client = AsyncClient()
    await client.aforce_login(await make_user("visitor", staff=False))

    response = await client.get(NODES)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_a_staff_session_must_send_the_csrf_token_to_drain_and_is_named_as_the_actor(
    http_node: HttpNode,
) -> None:
    node_id = await http_node.become_ready()
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(await make_user("operator", staff=True))

    without_token = await client.post(f"{NODES}/{node_id}/drain", content_type="application/json")
    # The docs page hands out the CSRF cookie and sends its token, as a browser would.
    docs = await client.get("/api/v1/docs")
    csrf = client.cookies["csrftoken"].value
    with_token = await client.post(
        f"{NODES}/{node_id}/drain",
        {"reason": "maintenance"},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )

    assert without_token.status_code == 403
    assert without_token.json()["error"]["message"].startswith("CSRF check failed")
    assert docs.status_code == 200
    assert with_token.status_code == 200
    assert with_token.json()["drained_by"] == "operator"


async def test_a_key_needs_no_csrf_token(issue_key, http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()
    client = AsyncClient(enforce_csrf_checks=True)

    response = await client.post(
        f"{NODES}/{node_id}/drain",
        content_type="application/json",
        headers=bearer(await issue_key("nodes:write")),
    )

    assert response.status_code == 200


async def test_a_bad_key_is_not_excused_by_a_staff_session() -> None:
    client = AsyncClient()
    await client.aforce_login(await make_user("operator", staff=True))

    response = await client.get(NODES, headers=bearer("ak_000000000000.whatever"))

    assert response.status_code == 401
